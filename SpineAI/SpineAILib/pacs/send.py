"""``spineai send``: C-STORE a folder of DICOM files to a PACS or an Orthanc server (pynetdicom)."""

import socket
from pathlib import Path

from SpineAILib.errors import InputError, SpineAIError

DEFAULT_CALLING_AET = "SPINEAI"


class SendError(SpineAIError):
    """The peer refused, could not be reached, or did not store an instance."""


def parse_peer(text):
    """'HOST:PORT' -> (host, port); InputError with one line otherwise."""
    host, _, port = str(text).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--to {text}: expected HOST:PORT, e.g. pacs.example.org:104 or 127.0.0.1:4242")
    return host.strip("[]"), int(port)


def dicom_files(folder):
    """Every DICOM file below ``folder`` (sorted), as (path, dataset); InputError if there is none."""
    import pydicom

    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: no such file or folder")
    paths = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    found = []
    for path in paths:
        try:
            found.append((path, pydicom.dcmread(path)))
        except Exception:
            continue
    if not found:
        raise InputError(f"{folder}: no DICOM files to send")
    return found


def send_folder(folder, to, aet, *, calling_aet=DEFAULT_CALLING_AET, timeout=10.0, progress=None):
    """C-STORE every DICOM file below ``folder`` to ``to`` ('HOST:PORT', AE title ``aet``).

    Returns the number of instances stored; SendError (one line) when the association is
    rejected or aborted, the peer is unreachable, or an instance is not stored.
    """
    from pynetdicom import AE

    host, port = parse_peer(to)
    files = dicom_files(folder)
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    contexts = sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for _, ds in files})
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, [syntax])
    try:  # unreachable is told apart from refused: pynetdicom reports both as an aborted association
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        raise SendError(f"cannot reach a DICOM server at {host}:{port} ({error.strerror or error})") from None
    assoc = ae.associate(host, port, ae_title=aet)
    if not assoc.is_established:
        if assoc.is_rejected:
            raise SendError(f"{aet}@{host}:{port} refused the association (check the AE title {aet!r} and that the "
                            f"server accepts {calling_aet!r})")  # fmt: skip
        if assoc.is_aborted:
            raise SendError(f"{aet}@{host}:{port} aborted the association")
        raise SendError(f"cannot reach a DICOM server at {host}:{port} (connection refused or timed out)")
    stored = 0
    try:
        for n, (path, ds) in enumerate(files, start=1):
            if progress:
                progress((n - 1) / len(files), f"sending {path.name}")
            try:
                status = assoc.send_c_store(ds)
            except (RuntimeError, ValueError) as error:  # no accepted presentation context for this instance
                raise SendError(f"{path.name}: {aet}@{host}:{port} did not accept it ({' '.join(str(error).split())[:160]})") from None
            code = getattr(status, "Status", None)
            if code is None:
                raise SendError(f"{path.name}: no answer from {aet}@{host}:{port} (connection lost or timed out)")
            if code not in (0x0000, 0xB000, 0xB007, 0xB006):
                raise SendError(f"{path.name}: {aet}@{host}:{port} did not store it (status 0x{code:04X})")
            stored += 1
    finally:
        if assoc.is_established:
            assoc.release()
    return stored
