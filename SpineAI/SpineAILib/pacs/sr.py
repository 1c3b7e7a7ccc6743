"""DICOM SR: what a run's report says, as a TID 1500 Measurement Report (Comprehensive 3D SR).

Built from ``report.json`` and the tables it names, so it serves every workflow alike:

* one group per vertebra found (finding site: its SNOMED CT code from ``terminology``):
  volume, and any CT measurement the report carries (heights, Genant grade, attenuation);
* one group per disc level (lumbar-mri): its centre as a SCOORD3D point in the source's
  frame of reference, its height, and the severity grade of every condition (severity.tsv);
* one group per vertebra graded for fracture (cervical-ct): probability and call;
* ultrasound: the per-frame calls summarised (frames, counts, fractions, mask frames);
* a summary group: the run's message, warnings and, as the algorithm of every group, the
  model bundle id and version, with "trained on synthetic data" where that is true.

Codes: SNOMED CT / DCM / UCUM where a standard code exists; SpineAI's own concepts
(conditions, grades without a standard code, "not assessed") use the private scheme
``99SPINEAI``, as ``terminology`` does for "bad image quality".
"""

import csv
import math
from pathlib import Path

import numpy as np

from SpineAILib import terminology
from SpineAILib.vocabulary import SEVERITY_CONDITIONS

PRIVATE = "99SPINEAI"
RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])

_PROCEDURE = {"CT": ("77477000", "SCT", "Computerized axial tomography"),
              "MR": ("113091000", "SCT", "Magnetic resonance imaging"),
              "US": ("16310003", "SCT", "Ultrasonography")}  # fmt: skip
_GRADES = {"Normal/Mild": ("normal-mild", PRIVATE, "Normal/Mild"), "Moderate": ("6736007", "SCT", "Moderate"),
           "Severe": ("24484000", "SCT", "Severe")}  # fmt: skip
PRESENT = ("52101004", "SCT", "Present")
ABSENT = ("2667000", "SCT", "Absent")
FRACTURE = ("125605004", "SCT", "Fracture of bone")


def _c(code):
    import highdicom as hd

    value, scheme, meaning = code
    return hd.sr.CodedConcept(value=str(value), scheme_designator=scheme, meaning=str(meaning)[:64])


def private(value, meaning):
    return _c((value, PRIVATE, meaning))


def condition_concept(condition):
    return private(condition, condition.replace("_", " ").capitalize())


def grade_concept(grade):
    return _c(_GRADES.get(grade) or (str(grade).lower().replace(" ", "-").replace("/", "-") or "unknown", PRIVATE,
                                     str(grade) or "Unknown"))  # fmt: skip


def _unit(code, meaning):
    return _c((code, "UCUM", meaning))


def _number(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _site(name):
    """(finding type, finding site) concepts of a vertebra or disc level name; (None, None) when unknown."""
    found = terminology.codes(name)
    if not found or not found.get("type"):
        return None, None
    type_ = _c((found["type"][1], found["type"][0], found["type"][2]))
    region = found.get("region")
    site = _c((region[1], region[0], region[2])) if region else type_
    return type_, site


def model_lines(report):
    """'bundle version' texts of every model the report names, with 'trained on synthetic data' where true."""
    from SpineAILib.models.bundle import read_metadata, trained_on_synthetic_data

    lines, seen = [], set()
    models = [report.get("model") or {}]
    for value in (report.get("results") or {}).values():
        if isinstance(value, dict):
            models += [value.get("model") or {}] if "model" in value else []
            if "bundle_id" in value:
                models.append(value)
    for model in models:
        bundle, version = model.get("bundle_id"), model.get("version")
        if not bundle or bundle in seen:
            continue
        seen.add(bundle)
        training = model.get("trained_on")
        if training is None and model.get("path"):
            try:
                training = read_metadata(model["path"]).get("training")
            except Exception:  # a bundle moved since the run: say what the report says
                training = None
        if training is not None and not isinstance(training, dict):
            training = {"data": str(training)}  # a report's own words for what the model learnt from
        synthetic = trained_on_synthetic_data({"training": training}) if training is not None else any(
            bundle in w and "synthetic" in w.lower() for w in report.get("warnings", []))  # fmt: skip
        lines.append(f"model {bundle} {version}" + ("; trained on synthetic data, not a clinical reading" if synthetic else ""))
    return lines


def _texts(lines, limit=1024):
    return [" ".join(str(line).split())[:limit] for line in lines if str(line).strip()]


def _rows(path):
    if not path.is_file():
        return []
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream, delimiter="\t"))


def build_sr(report, run_folder, source, *, series_uid, series_number, instance_number, software_version,
             segmentation=None):  # fmt: skip
    """The Comprehensive3DSR of ``report`` (highdicom); ``segmentation``: the written SEG dataset, if any."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    run_folder = Path(run_folder)
    results = report.get("results") or {}
    model = report.get("model") or {}
    lines = model_lines(report)

    def algorithm(extra=()):
        return hd.sr.AlgorithmIdentification(
            name=str(model.get("bundle_id") or report.get("task")), version=str(model.get("version") or "unknown"),
            parameters=_texts([*lines, *extra]) or None,
        )  # fmt: skip

    groups = []

    def tracking(text):
        return hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=str(text)[:64])

    def measurement(code, value, unit, site=None):
        value = _number(value)
        if value is None:
            return None
        return hd.sr.Measurement(name=code, value=value, unit=unit, finding_sites=[hd.sr.FindingSite(site)] if site else None)

    def group(label, finding_type=None, site=None, measurements=(), evaluations=(), parameters=()):
        algo = algorithm(parameters)
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking(label), finding_type=finding_type,
            finding_sites=[hd.sr.FindingSite(site)] if site else None, algorithm_id=algo,
            measurements=[m for m in measurements if m is not None] or None,
            qualitative_evaluations=[hd.sr.QualitativeEvaluation(n, v) for n, v in evaluations] or None,
        ))  # fmt: skip

    # -- summary: message, warnings, models
    found = results.get("vertebrae") or []
    summary_measurements = [measurement(private("vertebrae-found", "Number of vertebrae found"), len(found),
                                        _unit("{vertebrae}", "vertebrae"))] if "vertebrae" in results else []  # fmt: skip
    message = results.get("message") or results.get("summary") or ""
    group("summary", private("run-summary", "SpineAI result summary"), measurements=summary_measurements,
          parameters=[f"task {report.get('task')}", f"result: {message}" if message else "",
                      *(f"warning: {w}" for w in report.get("warnings", []))])  # fmt: skip

    # -- vertebrae: volume and any CT measurements present
    ml = _unit("ml", "milliliter")
    for vertebra in found:
        name = vertebra.get("name")
        finding_type, site = _site(name)
        items = [measurement(codes.SCT.Volume, vertebra.get("volume_ml"), ml, None)]
        evaluations = []
        for key, value in vertebra.items():
            if key in ("name", "label", "volume_ml", "centre_ras"):
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                unit = _unit("mm", "millimeter") if key.endswith("_mm") else (
                    _unit("[hnsf'U]", "Hounsfield unit") if key.endswith("_hu") else _unit("1", "no units"))  # fmt: skip
                items.append(measurement(private(key, key.replace("_", " ")), value, unit))
            elif isinstance(value, str) and value:
                evaluations.append((private(key, key.replace("_", " ")), private(value.lower().replace(" ", "-"), value)))
            elif isinstance(value, dict):  # e.g. heights {anterior_mm: .., middle_mm: ..}
                for sub, number in value.items():
                    unit = _unit("mm", "millimeter") if sub.endswith("_mm") else _unit("1", "no units")
                    items.append(measurement(private(f"{key}-{sub}", f"{key} {sub}".replace("_", " ")), number, unit))
        group(f"vertebra {name}", finding_type, site, items, evaluations)

    # -- disc levels: point, height, severity grades
    severity = {}
    for row in _rows(run_folder / (report.get("outputs") or {}).get("severity", "severity.tsv")):
        severity.setdefault(row.get("level"), []).append(row)
    frame_of_reference = source.frame_of_reference_uid
    for disc in results.get("disc_levels") or []:
        level = disc.get("level")
        finding_type, site = _site(level)
        evaluations = [(private("disc-level-visible", "Disc level visible"), _c(PRESENT if disc.get("visible") else ABSENT))]
        for row in sorted(severity.get(level, []), key=lambda r: SEVERITY_CONDITIONS.index(r["condition"])
                          if r.get("condition") in SEVERITY_CONDITIONS else 99):  # fmt: skip
            assessed = str(row.get("assessed", "1")) == "1"
            value = grade_concept(row.get("grade")) if assessed else private("not-assessed", "Not assessed")
            evaluations.append((condition_concept(row["condition"]), value))
        items = [measurement(private("disc-height", "Disc height"), disc.get("height_mm"), _unit("mm", "millimeter"))]
        centre = disc.get("centre_ras")
        parameters = [f"not visible: {disc['reason']}"] if disc.get("reason") else []
        if centre is not None and frame_of_reference:
            point = [float(v) for v in np.asarray(centre, float) * RAS_TO_LPS]
            algo = algorithm(parameters)
            groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking(f"disc {level}"),
                referenced_region=hd.sr.ImageRegion3D(graphic_type=hd.sr.GraphicTypeValues3D.POINT,
                                                      graphic_data=np.array([point]), frame_of_reference_uid=frame_of_reference),
                finding_type=finding_type, finding_sites=[hd.sr.FindingSite(site)] if site else None, algorithm_id=algo,
                measurements=[m for m in items if m is not None] or None,
                qualitative_evaluations=[hd.sr.QualitativeEvaluation(n, v) for n, v in evaluations],
            ))  # fmt: skip
        else:
            group(f"disc {level}", finding_type, site, items, evaluations, parameters)

    # -- fractures (cervical-ct)
    fractures = results.get("fractures") or {}
    for row in fractures.get("rows") or []:
        name = row.get("vertebra")
        finding_type, site = _site(name) if name != "patient_overall" else (None, None)
        call = str(row.get("call") or "")
        value = {"fracture": PRESENT, "fractured": PRESENT, "no fracture": ABSENT}.get(call.lower())
        value = _c(value) if value else private(call.lower().replace(" ", "-") or "unknown", call or "Unknown")
        group(f"fracture {name}", _c(FRACTURE), site,
              [measurement(private("fracture-probability", "Fracture probability"), row.get("probability"),
                           _unit("1", "no units"))],
              [(_c(FRACTURE), value)], [f"{name}: {call}"])  # fmt: skip

    # -- ultrasound: per-frame calls summarised
    if "counts" in results and "frames" in results:
        frames = _unit("{frames}", "frames")
        items = [measurement(private("frames", "Frames"), results.get("frames"), frames),
                 measurement(private("good-quality-frames", "Good-quality frames"), results.get("good_quality_frames"), frames)]  # fmt: skip
        evaluations = []
        for label, count in (results.get("counts") or {}).items():
            meaning = label.replace("_", " ")
            items.append(measurement(private(f"frames-{label}", f"Frames called {meaning}"), count, frames))
            items.append(measurement(private(f"fraction-{label}", f"Fraction of frames called {meaning}"),
                                     (results.get("fractions") or {}).get(label), _unit("1", "no units")))  # fmt: skip
            evaluations.append((private(f"seen-{label}", f"{meaning.capitalize()} seen in the cine"),
                                _c(PRESENT if count else ABSENT)))  # fmt: skip
        for key, value in (results.get("localisation") or {}).items():
            if key.startswith("frames_with"):
                items.append(measurement(private(key.replace("_", "-"), key.replace("_", " ")), value, frames))
        best = results.get("best_frames") or []
        group("ultrasound cine", private("ultrasound-calls", "Per-frame ultrasound calls"), None, items, evaluations,
              [f"best frames: {', '.join(str(b.get('frame', b) if isinstance(b, dict) else b) for b in best)}"] if best else [])  # fmt: skip

    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="SpineAI", manufacturer_name="SpineAI", model_name=str(model.get("bundle_id") or "")[:64]),
    )  # fmt: skip
    procedure = _PROCEDURE.get(str(source.reference.get("Modality", "")), ("363679005", "SCT", "Imaging"))
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=_c(procedure),
        imaging_measurements=groups,
    )
    evidence = list(source.datasets) + ([segmentation] if segmentation is not None else [])
    return hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=content[0],
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=instance_number,
        manufacturer="SpineAI",
        series_description=f"SpineAI {report.get('task')} report"[:64],
        is_complete=True,
        is_final=False,
        is_verified=False,
        institution_name=None,
    )
