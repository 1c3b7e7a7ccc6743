"""Hostile inputs made on the spot: real scene bundles, DICOM series, zips and NIfTI/NRRD files."""

import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np


def cli(capsys, *args):
    """``spineai ARGS`` in this process: (exit code, stderr lines that are not progress)."""
    from SpineAILib.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip() and not line.startswith("[")]


def assert_refused(code, lines, *fragments):
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("spineai: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def labelled_volume(shape=(8, 10, 12)):
    from SpineAILib.images import VolumeImage

    rng = np.random.default_rng(0)
    voxels = rng.integers(0, 400, shape).astype(np.int16)
    labels = np.zeros(shape, np.uint8)
    labels[2:6, 3:7, 3:9] = 20  # L1
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    return VolumeImage(voxels, affine, modality="MR"), VolumeImage(labels, affine, is_labelmap=True)


def scene_bundle(path):
    """A real Slicer scene (.mrb): an MR volume and a vertebra segmentation, exportable for lumbar-mri."""
    from SpineAILib.scene.context import SceneContext
    from SpineAILib.scene.segmentations import add_segmentation_from_labelmap
    from SpineAILib.scene.storage import save_scene_mrb
    from SpineAILib.scene.volumes import add_volume

    ctx = SceneContext.headless()
    volume, labels = labelled_volume()
    node = add_volume(ctx, volume, name="mri")
    add_segmentation_from_labelmap(ctx, labels, reference_node=node, name="vertebrae")
    return save_scene_mrb(ctx, Path(path))


def rewrite_zip(src, dst, edit=None, extra=()):
    """Copy the zip ``src`` to ``dst``; ``edit(name, data) -> data``; ``extra``: (ZipInfo or name, bytes) appended."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            data = old.read(info)
            new.writestr(info, edit(info.filename, data) if edit else data)
        for info, data in extra:
            new.writestr(info, data)
    return Path(dst)


def symlink_member(name, target):
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (0o120777 << 16)
    return info, target


def claim_size(path, member, size):
    """Make the central directory say ``member`` unpacks to ``size`` bytes (a zip bomb's header)."""
    data = bytearray(Path(path).read_bytes())
    name = member.encode()
    at = data.find(b"PK\x01\x02" + bytes(0))
    while at >= 0:
        length = struct.unpack_from("<H", data, at + 28)[0]
        if bytes(data[at + 46 : at + 46 + length]) == name:
            struct.pack_into("<I", data, at + 24, size)
            Path(path).write_bytes(bytes(data))
            return path
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{member} not in {path}")


def dicom_series(folder, shape=(6, 16, 16), description="Sagittal T2", orientation="sagittal", edit=None):
    """A small MR DICOM series written by the samples' writer; ``edit(ds, k)`` changes each file."""
    import pydicom

    from SpineAILib.images import VolumeImage
    from SpineAILib.samples.dicom_writer import write_dicom_series

    rng = np.random.default_rng(1)
    if orientation == "sagittal":  # K along R-L, J down S-I, I along A-P
        matrix = np.array([[0, 0, 3.0, 0], [0.9, 0, 0, 0], [0, -0.9, 0, 0], [0, 0, 0, 1]], float)
    else:
        matrix = np.diag([0.9, 0.9, 3.0, 1.0])
    image = VolumeImage(rng.integers(0, 300, shape).astype(np.int16), matrix, modality="MR")
    paths = write_dicom_series(image, folder, modality="MR", series_description=description, rescale=(1.0, 0.0))
    if edit is not None:
        for k, path in enumerate(sorted(paths)):
            ds = pydicom.dcmread(path)
            edit(ds, k)
            ds.save_as(path)
    return Path(folder)


def copy_bundle(name, dst, edit):
    """A copy of a shipped bundle with its metadata changed by ``edit(meta)``."""
    import json

    from conftest import REPO

    shutil.copytree(REPO / "SpineAI" / "Resources" / "Models" / name, dst)
    meta = json.loads((dst / "metadata.json").read_text())
    edit(meta)
    (dst / "metadata.json").write_text(json.dumps(meta))
    return dst
