"""Results back to PACS: DICOM SEG, DICOM SR and secondary captures of a run, and C-STORE.

A core-level package (imports io, images, terminology, vocabulary, models; never a
workflow, task or face). It reads a finished run folder — ``report.json`` and the files
it names — plus the run's source instances, so it serves the three workflows alike:

* ``check_dicom_input(path)``: the one-line refusal of a non-DICOM input (before any work);
* ``find_source(path, image)``: the source instances of the image (K order), refusing
  missing SOP Instance UIDs or mixed studies (before the run);
* ``write_dicom_outputs(run_folder, report, source, arrays=)``: ``run_folder/dicom/`` with
  ``seg_*.dcm`` (highdicom Segmentation), ``sr_report.dcm`` (TID 1500) and ``sc_*.dcm``
  (secondary captures of the PNG pictures); new Series/SOP Instance UIDs, the source's
  Study Instance UID and patient module: these files go back to the same patient's record;
* ``read_seg(path)`` -> (label map VolumeImage, {label value: segment label}); ``describe_seg``;
* ``send_folder(folder, "HOST:PORT", aet)``: C-STORE (``spineai send``).
"""

import time
from pathlib import Path

from SpineAILib.pacs.source import Source, check_dicom_input, find_source  # noqa: F401 (public names)

DICOM_FOLDER = "dicom"
SERIES_NUMBERS = {"seg": 9901, "sr": 9902, "sc": 9903}  # high numbers: after the scanner's own series


def read_seg(path):
    """A DICOM SEG file as (label map VolumeImage, {label value: segment label}) — see seg.read_seg."""
    from SpineAILib.pacs.seg import read_seg as _read

    return _read(path)


def describe_seg(path):
    from SpineAILib.pacs.seg import describe_seg as _describe

    return _describe(path)


def is_dicom_seg(path):
    """True for a DICOM file whose SOP class is Segmentation Storage (header only)."""
    import pydicom

    path = Path(path)
    if not path.is_file():
        return False
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"])
        # pydicom decodes values only when asked: a damaged element (an unknown VR) raises here
        return str(ds.get("SOPClassUID", "")) == "1.2.840.10008.5.1.4.1.1.66.4" or ds.get("Modality") == "SEG"
    except Exception:
        return False


def send_folder(folder, to, aet, **options):
    from SpineAILib.pacs.send import send_folder as _send

    return _send(folder, to, aet, **options)


def _segments_of(labels):
    import numpy as np

    from SpineAILib import terminology

    segments = labels.metadata.get("segments") or []
    if not segments:
        for value in np.unique(labels.voxels):
            if value:
                try:
                    name = terminology.vertebra_name(int(value))
                except KeyError:
                    name = f"Label {int(value)}"
                segments.append({"name": name, "label": int(value)})
    return segments


def write_dicom_outputs(run_folder, report, source, arrays=None):
    """Write ``run_folder/dicom/``; returns {"files": [names under run_folder], "warnings": [...], "seconds"}.

    ``report``: the run's report dict (its warnings get the DICOM warnings appended, so the SR and
    report.json both say them); ``arrays``: the job's in-memory results (ultrasound per-frame masks).
    """
    import highdicom as hd

    from SpineAILib import __version__
    from SpineAILib.io import load
    from SpineAILib.pacs import capture, seg, sr

    t0 = time.perf_counter()
    run_folder = Path(run_folder)
    folder = run_folder / DICOM_FOLDER
    folder.mkdir(exist_ok=True)
    outputs = report.get("outputs") or {}
    model = report.get("model") or {}
    algorithm = {"name": str(model.get("bundle_id") or report.get("task"))[:64], "version": str(model.get("version") or "")}
    written, warnings, seg_dataset = [], [], None
    seg_uid = hd.UID()
    version = f"SpineAI {__version__}"

    if source.kind == "volume":
        name = outputs.get("segmentation")
        segments = []
        if name and (run_folder / name).is_file():
            labels = load(run_folder / name)
            path = folder / "seg_vertebrae.dcm"
            segments = seg.write_volume_seg(source, labels, _segments_of(labels), path, series_uid=seg_uid,
                                            series_number=SERIES_NUMBERS["seg"], instance_number=1, algorithm=algorithm,
                                            software_version=version)  # fmt: skip
            if segments:
                written.append(path)
                seg_dataset = hd.seg.segread(str(path))
        if not segments:
            warnings.append("no DICOM SEG written: the run segmented nothing (the SR and the pictures say so)")
    else:
        masks = (arrays or {}).get("frame_masks")
        frames = []
        if masks:
            frames = seg.write_frame_segs(source, masks, folder, series_uid=seg_uid, series_number=SERIES_NUMBERS["seg"],
                                          algorithm=algorithm, software_version=version)  # fmt: skip
            written += [path for _, path in frames]
        if not frames:
            warnings.append("no DICOM SEG written: no cord or CSF mask on any frame")
    warnings[:0] = source.warnings
    report.setdefault("warnings", []).extend(warnings)

    document = sr.build_sr(report, run_folder, source, series_uid=hd.UID(), series_number=SERIES_NUMBERS["sr"],
                           instance_number=1, software_version=version, segmentation=seg_dataset)  # fmt: skip
    path = folder / "sr_report.dcm"
    document.save_as(path)
    written.append(path)

    sc_uid = hd.UID()
    pictures = [(role, name) for role, name in outputs.items() if str(name).lower().endswith(".png")]
    for n, (role, name) in enumerate(pictures, start=1):
        if (run_folder / name).is_file():
            path = folder / f"sc_{Path(name).stem}.dcm"
            capture.write_capture(run_folder / name, source, path, series_uid=sc_uid, series_number=SERIES_NUMBERS["sc"],
                                  instance_number=n, description=f"SpineAI {report.get('task')} {role}")  # fmt: skip
            written.append(path)
    return {"files": [str(p.relative_to(run_folder)) for p in written], "warnings": warnings,
            "seconds": round(time.perf_counter() - t0, 3)}  # fmt: skip
