"""Sources for the dataset tests: DICOM with planted identifiers and run folders built from them.

Run folders are built the way ``spineai run`` writes them (report.json naming the input,
results under the run's file names, through the same scene helpers), without running a
model, so the export's de-identification is tested in seconds.
"""

import json
from pathlib import Path

# Distinctive strings planted in every identifying DICOM attribute; none may reach an export.
PLANTED = {
    "PatientName": "Qwertyson^Planted",
    "PatientID": "PID-7741-XQ",
    "PatientBirthDate": "19470312",
    "AccessionNumber": "ACC-99127-ZZ",
    "InstitutionName": "Kestrel Falls Infirmary",
    "InstitutionAddress": "12 Wrenfield Lane",
    "ReferringPhysicianName": "Drzewiecki^Hieronim",
    "OperatorsName": "Opsworth^Tamsin",
    "StationName": "STN-GLOBBER-4",
    "StudyDate": "19990421",
    "SeriesDate": "19990422",
    "AcquisitionDate": "19990423",
    "ContentDate": "19990424",
    "StudyTime": "134512",
    "StudyID": "STUDY-5531-QQ",
    "StudyDescription": "Lumbar for Qwertyson",
    "SeriesDescription": "Sag T2 Qwertyson",
    "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.77771234",
    "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.77771235",
}
# What the grep looks for: the planted values and their parts (a name split at ^).
NEEDLES = sorted({v for v in PLANTED.values()} | {p for v in PLANTED.values() for p in v.split("^") if len(p) >= 6}
                 | {"Qwertyson", "Kestrel", "Wrenfield", "19470312", "1947-03-12", "1999-04-21"})  # fmt: skip
PLANTED_FOLDER = "Qwertyson_Planted_PID-7741-XQ"


def plant(paths, series_uid=None):
    """Set every planted attribute in the DICOM files ``paths`` (in place)."""
    import pydicom

    for path in paths:
        ds = pydicom.dcmread(str(path))
        for keyword, value in PLANTED.items():
            setattr(ds, keyword, value)
        if series_uid:
            ds.SeriesInstanceUID = series_uid
        ds.save_as(str(path), enforce_file_format=True)


def planted_mri_series(folder):
    """A sagittal MR phantom as a DICOM series with planted identifiers -> (folder, image, labelmap)."""
    from SpineAILib.samples.dicom_writer import write_dicom_series
    from SpineAILib.samples.spine_phantom import make_phantom

    image, labels = make_phantom("MR", shape_kji=(24, 96, 64), spacing=(2.0, 2.0, 3.0), plane="sagittal")
    paths = write_dicom_series(image, folder, modality="MR", series_description="x", rescale=(1.0, 0.0))
    plant(paths)
    return Path(folder), image, labels


def planted_cine_dicom(path, cine):
    from SpineAILib.samples.cine_phantom import write_cine_dicom

    write_cine_dicom(cine, path)
    plant([path], series_uid=PLANTED["SeriesInstanceUID"] + ".9")
    return Path(path)


def write_report(folder, task, input_path, outputs):
    report = {"task": task, "input": {"path": str(input_path)}, "outputs": outputs, "results": {}, "warnings": []}
    (Path(folder) / "report.json").write_text(json.dumps(report, indent=2))


def mri_run_folder(folder, input_path, image, labels, severity=True):
    """What `spineai run lumbar-mri` leaves, built from the phantom's own labels."""
    from SpineAILib.samples.spine_phantom import disc_centres_ras
    from SpineAILib.scene import SceneContext, add_points, add_roi, add_segmentation_from_labelmap, add_volume, save_node
    from SpineAILib.workflows.lumbar.workflow import write_markups_list

    folder = Path(folder)
    folder.mkdir(parents=True)
    ctx = SceneContext.headless()
    volume = add_volume(ctx, image, name=PLANTED["SeriesDescription"])  # a node name that must not leak
    segmentation = add_segmentation_from_labelmap(ctx, labels, reference_node=volume, name="Vertebrae", closed_surface=False)
    save_node(segmentation, folder / "vertebrae.seg.nrrd")
    names = ["L1/L2", "L2/L3", "L3/L4", "L4/L5"]
    discs = [(name, tuple(c)) for name, c in zip(names, disc_centres_ras())]
    save_node(add_points(ctx, "Disc levels", discs), folder / "discs.mrk.json")
    rois = [add_roi(ctx, f"Level {n}", c, (40.0, 40.0, 20.0), label=n) for n, c in discs[:2]]
    write_markups_list(rois, folder / "levels.mrk.json", save_node)
    outputs = {"segmentation": "vertebrae.seg.nrrd", "discs": "discs.mrk.json", "levels": "levels.mrk.json"}
    if severity:
        rows = ["level\tcondition\tp_normal_mild\tp_moderate\tp_severe\tgrade\tassessed\tseries\treason\trow_id",
                "L1/L2\tspinal_canal_stenosis\t0.8\t0.1\t0.1\tNormal/Mild\t1\tx\t\tPID-7741-XQ_spinal_canal_stenosis_l1_l2",
                "L4/L5\tspinal_canal_stenosis\t0.1\t0.2\t0.7\tSevere\t1\tx\t\tr2",
                "L5/S1\tspinal_canal_stenosis\t\t\t\tnot assessed\t0\t\tnot visible\tr3"]
        (folder / "severity.tsv").write_text("\n".join(rows) + "\n")
        outputs["severity"] = "severity.tsv"
    write_report(folder, "lumbar-mri", input_path, outputs)
    return folder


def cine_run_folder(folder, input_path, cine, labels, masks=None, boxes=None):
    """What `spineai run lp-ultrasound` leaves: frames.tsv, and scene.mrb with mask/box sequences."""
    from SpineAILib.scene import SceneContext, add_cine, add_table, save_node, save_scene_mrb
    from SpineAILib.scene.cine_overlays import add_box_sequences, add_mask_sequence

    folder = Path(folder)
    folder.mkdir(parents=True)
    ctx = SceneContext.headless()
    _, browser, _ = add_cine(ctx, cine, PLANTED["SeriesDescription"])
    names = ("bad_quality", "spinal_cord", "csf")
    columns = {"frame": list(range(cine.n_frames)), "time_ms": [float(t) for t in cine.frame_times_ms],
               **{f"p_{k}": [float(v) for v in labels[:, j]] for j, k in enumerate(names)},
               **{k: [int(v) for v in labels[:, j]] for j, k in enumerate(names)}}  # fmt: skip
    save_node(add_table(ctx, "frames", columns), folder / "frames.tsv")
    if masks:
        add_mask_sequence(ctx, browser, masks)
    if boxes:
        add_box_sequences(ctx, browser, boxes)
    save_scene_mrb(ctx, folder / "scene.mrb")
    write_report(folder, "lp-ultrasound", input_path, {"table": "frames.tsv", "scene": "scene.mrb"})
    return folder


def all_bytes_of(root):
    """(relative path, bytes) of every file under ``root``, gzip members decompressed too."""
    import gzip

    for path in sorted(Path(root).rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            yield str(path.relative_to(root)), data
            if data[:2] == b"\x1f\x8b":
                yield str(path.relative_to(root)) + " (decompressed)", gzip.decompress(data)


def leaks(root):
    """[(file, needle)] for every planted string found in a file's bytes or its path under ``root``."""
    found = []
    for name, data in all_bytes_of(root):
        lowered = data.lower()
        for needle in NEEDLES:
            if needle.lower().encode() in lowered or needle.lower() in name.lower():
                found.append((name, needle))
    return found


def phantom_cine(n_frames=6, seed=3):
    from SpineAITraining.ultrasound.generator import generate_cine

    generated = generate_cine(seed, machine="linear_hf", view="sagittal_midline", n_frames=n_frames, size=(96, 96))
    return generated
