"""The results as a reader sees them (SpineAILib.presentation, shared by the web app and the
desktop module): every warning in full, the grade grid, the fracture table with thresholds."""

import json
from html import escape as html_escape
from pathlib import Path

from SpineAILib.presentation import present, to_html
from SpineAILib.vocabulary import SEVERITY_RESEARCH_NOTE

HEADER = "level\tcondition\tp_normal_mild\tp_moderate\tp_severe\tgrade\tassessed\tseries\treason\trow_id\n"
CONDITIONS = ("spinal_canal_stenosis", "left_neural_foraminal_narrowing", "right_neural_foraminal_narrowing",
              "left_subarticular_stenosis", "right_subarticular_stenosis")


def _lumbar_run(folder):
    folder.mkdir()
    long_warning = "L5 and the sacrum are not in view: level names rest on the vertebrae above and may be off by one level; check them"
    (folder / "report.json").write_text(json.dumps({"task": "lumbar-mri", "warnings": [long_warning],
                                                    "results": {"message": "3 lumbar vertebra(e) found"}}))
    rows = []
    for c in CONDITIONS:
        rows.append(f"L1/L2\t{c}\t0.1\t0.2\t0.7\tSevere\t1\tSagittal T1\t\tx\n" if c != "spinal_canal_stenosis"
                    else f"L1/L2\t{c}\t0.9\t0.08\t0.02\tNormal/Mild\t1\tSagittal T2/STIR\t\tx\n")
        rows.append(f"L5/S1\t{c}\tnan\tnan\tnan\tnot assessed\t0\t\tdisc level not visible: L5 not found\tx\n")
    (folder / "severity.tsv").write_text(HEADER + "".join(rows))
    return long_warning


def test_grade_grid_warnings_and_collapsed_rows(tmp_path):
    warning = _lumbar_run(tmp_path / "run")
    view = present(tmp_path / "run")
    assert view["warnings"] == [warning]  # in full
    grid = view["grid"]
    assert [c["title"] for c in grid["columns"]] == ["Canal", "L foramen", "R foramen", "L subart.", "R subart."]
    assert [r["level"] for r in grid["rows"]] == ["L1/L2"]
    cells = grid["rows"][0]["cells"]
    assert [c["text"] for c in cells] == ["N/M", "Sev", "Sev", "Sev", "Sev"]
    assert cells[0]["colour"] == "#2e7d32" and cells[1]["colour"] == "#c62828"
    assert "p Normal/Mild 0.90 · Moderate 0.08 · Severe 0.02" in cells[0]["title"]
    assert grid["collapsed"] == [{"level": "L5/S1", "reason": "disc level not visible: L5 not found"}]
    html = to_html(view)
    assert warning in html and "#c62828" in html and "L5/S1 not assessed" in html


def test_fractures_show_the_threshold_beside_each_probability(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text(json.dumps({"task": "cervical-ct", "results": {}}))
    (run / "fractures.tsv").write_text(
        "vertebra\tpresent\tprobability\tcall\tthreshold\tvolume_ml\treason\trow_id\n"
        "C1\t0\tnan\tnot in view\t0.88\tnan\tnot found\tx\nC2\t0\tnan\tnot in view\t0.88\tnan\tnot found\tx\n"
        "C3\t1\t0.86\tno fracture\t0.88\t5.1\t\tx\nC4\t1\t0.93\tfracture\t0.88\t5.0\t\tx\n")
    view = present(run)
    rows = view["fractures"]["rows"]
    assert [(r["name"], r["text"]) for r in rows] == [("C3", "p 0.86 < 0.88"), ("C4", "p 0.93 ≥ 0.88")]
    assert view["fractures"]["collapsed"] == [{"reason": "not found", "names": "C1–C2"}]


# -- a research model's grades (issue 18): greyed, with the note and the line that replaces the model -------------

SEVERITY_BUNDLE = Path(__file__).resolve().parents[1] / "SpineAI" / "Resources" / "Models" / "lumbar-mri-severity"


def _bundle_metadata(tmp_path, training_data=None):
    """The shipped severity bundle's metadata, or a copy in a temp bundle whose training data is ``training_data``."""
    from SpineAILib.models.bundle import read_metadata

    if training_data is None:
        return read_metadata(SEVERITY_BUNDLE)
    meta = json.loads((SEVERITY_BUNDLE / "metadata.json").read_text(encoding="utf-8"))
    meta["training"]["data"] = training_data
    bundle = tmp_path / "real-bundle"
    bundle.mkdir()
    (bundle / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    return read_metadata(bundle)


def _graded_run(folder, meta):
    """A lumbar-mri run folder as the workflow writes it for bundle ``meta``: severity.tsv from
    grade_levels.table_columns, report.json's severity block with grade_levels.research_fields."""
    from SpineAILib.workflows.lumbar.severity import grade_levels

    rows = []
    for level in ("l1_l2", "l5_s1"):
        for k, c in enumerate(CONDITIONS):
            p = (0.1, 0.2, 0.7) if k else (0.9, 0.08, 0.02)
            rows.append({"level": level, "condition": c, "normal_mild": p[0], "moderate": p[1], "severe": p[2],
                         "grade": ("Severe" if k else "Normal/Mild") if level == "l1_l2" else "not assessed",
                         "assessed": level == "l1_l2", "series": "Sagittal T1" if level == "l1_l2" else "",
                         "reason": "" if level == "l1_l2" else "disc level not visible: L5 not found",
                         "row_id": f"1_{c}_{level}"})
    research = grade_levels.research_output(meta)
    columns = grade_levels.table_columns(rows, research)
    assert columns["research_output"] == [int(research)] * len(rows)  # the flag on every row of the table
    folder.mkdir()
    lines = ["\t".join(columns)] + ["\t".join(str(columns[k][i]) for k in columns) for i in range(len(rows))]
    (folder / "severity.tsv").write_text("\n".join(lines) + "\n")
    severity = {"rows": len(rows), "model": {"bundle_id": meta["bundle_id"]}, **grade_levels.research_fields(meta)}
    report = {"task": "lumbar-mri", "results": {"message": "graded", "severity": severity}}
    (folder / "report.json").write_text(json.dumps(report))
    return severity


def test_research_model_grades_are_greyed_under_the_note_and_real_data_ones_are_not(tmp_path):
    from SpineAILib.presentation import GRADE_COLOURS, RESEARCH_GRADE_COLOURS

    shipped = _graded_run(tmp_path / "research", _bundle_metadata(tmp_path))
    assert shipped["research_output"] is True and shipped["research_note"] == SEVERITY_RESEARCH_NOTE
    view = present(tmp_path / "research")
    grid = view["grid"]
    assert grid["research_output"] is True and grid["research_note"] == SEVERITY_RESEARCH_NOTE
    assert "not trained on patient labels" in grid["research_note"]
    assert "spineai-train lumbar-severity --data RSNA_DIR" in grid["research_note"]  # the line that replaces it
    cells = grid["rows"][0]["cells"]
    assert [c["colour"] for c in cells] == [RESEARCH_GRADE_COLOURS["Normal/Mild"]] + [RESEARCH_GRADE_COLOURS["Severe"]] * 4
    assert all(c["research"] for c in cells)
    assert "p Normal/Mild 0.90 · Moderate 0.08 · Severe 0.02" in cells[0]["title"]  # probabilities kept, on hover
    assert [g["colour"] for g in grid["legend"][:3]] == [RESEARCH_GRADE_COLOURS[g] for g in GRADE_COLOURS]
    html = to_html(view)
    assert html.index(html_escape(SEVERITY_RESEARCH_NOTE)) < html.index("<table")  # the note above the grid
    assert RESEARCH_GRADE_COLOURS["Severe"] in html and GRADE_COLOURS["Severe"] not in html

    real = _bundle_metadata(tmp_path, "RSNA 2024 Lumbar Spine Degenerative Classification training set at /data/rsna "
                                      "(1975 labelled studies used)")
    severity = _graded_run(tmp_path / "real", real)
    assert severity == {**severity, "research_output": False, "research_note": ""}
    view = present(tmp_path / "real")
    grid = view["grid"]
    assert grid["research_output"] is False and grid["research_note"] == ""
    cells = grid["rows"][0]["cells"]
    assert cells[0]["colour"] == GRADE_COLOURS["Normal/Mild"] and cells[1]["colour"] == GRADE_COLOURS["Severe"]
    assert not any(c["research"] for c in cells)
    html = to_html(view)
    assert "not trained on patient labels" not in html and GRADE_COLOURS["Severe"] in html


def _naming_run(folder, naming):
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps({"task": "lumbar-mri", "results": {"message": "m", "naming": naming}}))
    return present(folder)


def test_level_names_say_what_they_rest_on(tmp_path):
    counted = _naming_run(tmp_path / "a", {"anchor": "sacrum", "status": "named", "reasons": [],
                                           "cross_check": {"agree": False, "differ": [{"column": "L4", "sacrum": "L5"}]}})
    assert counted["naming"]["text"] == "Levels counted up from S1 (the sacrum)"
    assert counted["naming"]["cross_check"] == "the level model's own top-down names differ: L4 (column) / L5 (from S1)"
    assert "Levels counted up from S1" in to_html(counted) and "L4 (column) / L5 (from S1)" in to_html(counted)
    reason = "level count uncertain: six lumbar-type bodies above S1"
    withheld = _naming_run(tmp_path / "b", {"anchor": "sacrum", "status": "withheld", "reasons": [reason]})
    assert withheld["naming"]["text"].endswith(f"names withheld: {reason}")
    column = _naming_run(tmp_path / "c", {"anchor": "column", "status": "named",
                                          "sacrum": {"found": False, "reason": "no sacrum model installed"}})
    assert column["naming"]["text"] == "Levels named from the column, top down: S1 not used (no sacrum model installed)"
    assert column["naming"]["cross_check"] == ""
    assert _naming_run(tmp_path / "d", None)["naming"] is None  # other tasks: nothing shown


# -- spine-ct: the vertebral-body table, the L1 bone-density line, how the levels were named (issue 13 item 3) ----

PICKHARDT = "Pickhardt PJ, Pooler BD, Lauder T, del Rio AM, Bruce RJ, Binkley N. Opportunistic screening ..."
THRESHOLDS = {"osteoporosis_likely_at_or_below": 110.0, "normal_above": 160.0}


def _measured(name, label, heights=(None, None, None), grade=None, morphology=None, hu=None, cut=False, notes=(),
              centre=(0.0, 0.0, 0.0)):
    """A row as vertebral_bodies.measure_vertebral_bodies writes it into report.json (the keys the table reads)."""
    return {"name": name, "label": label, "cut_by_field_of_view": cut, "anterior_height_mm": heights[0],
            "middle_height_mm": heights[1], "posterior_height_mm": heights[2], "genant_grade": grade,
            "genant_morphology": morphology, "genant_reference": "own posterior height" if grade is not None else None,
            "genant_borderline": False, "height_loss_percent": None, "volume_ml": 60.0, "hu_mean": hu,
            "notes": list(notes), "centre_ras": list(centre)}


def _spine_ct_run(folder, results, warnings=()):
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps({"task": "spine-ct", "warnings": list(warnings), "results": results}))
    return present(folder)


def test_the_heights_picture_is_shown_only_as_the_runs_own_png(tmp_path):
    """The picture named in report.json's outputs, in the run folder, a PNG under the size cap; anything else
    (a path outside the folder, a link out of it, not a PNG, missing) shows no picture."""
    from SpineAILib.presentation import PICTURE_MAX_BYTES, PNG_SIGNATURE, heights_picture, to_html

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "heights.png").write_bytes(PNG_SIGNATURE + b"rest")
    (tmp_path / "outside.png").write_bytes(PNG_SIGNATURE + b"rest")
    (folder / "fake.png").write_bytes(b"<svg onload=alert(1)>")
    (folder / "link.png").symlink_to(tmp_path / "outside.png")  # a PNG, but from outside the run
    with open(folder / "huge.png", "wb") as huge:  # a PNG over the size cap (sparse: nothing much is written)
        huge.write(PNG_SIGNATURE)
        huge.truncate(PICTURE_MAX_BYTES + 1)
    picture = heights_picture(folder, {"outputs": {"heights_picture": "heights.png"}})
    assert picture["data_url"].startswith("data:image/png;base64,") and picture["path"].endswith("heights.png")
    for name in ("../outside.png", "fake.png", "link.png", "huge.png", "missing.png", None, 3):
        assert heights_picture(folder, {"outputs": {"heights_picture": name}}) is None, name
    html_text = to_html({"vertebral_bodies": {"rows": [], "picture": picture}})
    assert "<img src='file://" in html_text and "heights.png" in html_text


def test_spine_ct_vertebral_bodies_from_the_report(tmp_path):
    note = "named from the sacrum up, disc by disc; the last rib was not used to check the count"
    measured = [
        _measured("T12", 19, cut=True, notes=["cut by the field of view"], centre=(-4.6, 113.7, 413.6)),
        _measured("L1", 20, (27.6, 34.9, 33.0), grade=0, hu=104.1, centre=(-6.0, 121.6, 386.3),
                  notes=["Genant grade 0 is borderline: 0-1 with each height half a voxel (1.5 mm) off"]),
        _measured("L2", 21, (21.0, 27.0, 33.0), grade=2, morphology="wedge", hu=98.0, centre=(-5.4, 133.1, 352.3)),
        _measured("L3", 22, (30.0, 19.0, 31.0), grade=3, morphology="biconcave", hu=90.0, centre=(-4.7, 140.9, 315.5)),
    ]
    results = {
        "message": "4 vertebra(e) named from the sacrum: T12-L3",
        "vertebrae": [{"name": m["name"], "label": m["label"], "volume_ml": 60.0, "centre_ras": [1.0, 2.0, 3.0],
                       "cut_by_field_of_view": m["cut_by_field_of_view"]} for m in measured],
        "naming": {"anchor": "sacrum", "reason": "sacrum below this disc, joined to both iliac bones", "discs": 5,
                   "transitional_suspected": False, "notes": [note], "levels_not_named": 0},
        "measurements": measured,
        "bone_density": {"vertebra": "L1", "hu_mean": 104.1, "flag": "low", "thresholds_hu": THRESHOLDS,
                         "source": PICKHARDT, "caveat": "contrast ...",
                         "text": "L1 trabecular attenuation 104 HU, at or below 110 HU: osteoporosis likely"},
    }
    view = _spine_ct_run(tmp_path / "run", results)
    bodies = view["vertebral_bodies"]
    rows = {r["name"]: r for r in bodies["rows"]}
    assert list(rows) == ["T12", "L1", "L2", "L3"]
    l1 = rows["L1"]
    assert l1["heights"] == "A/M/P 27.6/34.9/33.0 mm" and l1["hu"] == "104 HU"
    assert (l1["grade"], l1["grade_text"]) == (0, "0") and "borderline" in l1["notes"]
    assert l1["centre_ras"] == [-6.0, 121.6, 386.3]  # the measured body's centre, where a click takes the views
    assert (rows["L2"]["grade_text"], rows["L3"]["grade_text"]) == ("2 wedge", "3 biconcave")
    # a grade within the heights' tolerance of others says which
    from SpineAILib.presentation import vertebral_body_row

    borderline = dict(measured[2], genant_borderline=True, genant_grade_range=[1, 3])
    assert vertebral_body_row(borderline)["grade_text"] == "2 wedge (borderline 1–3)"
    assert bodies["picture"] is None  # the report names no heights picture
    # grade 0 neutral, 1-3 increasingly alarming; not graded: the not-assessed grey
    from SpineAILib.presentation import GENANT_COLOURS, NOT_ASSESSED_COLOUR
    assert [rows[n]["colour"] for n in ("L1", "L2", "L3")] == [GENANT_COLOURS[0], GENANT_COLOURS[2], GENANT_COLOURS[3]]
    assert len(set(GENANT_COLOURS.values())) == 4
    cut = rows["T12"]
    assert cut["cut"] and "cut by the field of view" in cut["notes"]
    assert (cut["heights"], cut["grade_text"], cut["hu"], cut["colour"]) == ("—", "—", "—", NOT_ASSESSED_COLOUR)
    density = bodies["bone_density"]
    assert density["flag"] == "low" and density["text"].startswith("L1 trabecular attenuation 104 HU")
    assert density["source"].startswith("Pickhardt") and "110" in density["thresholds"] and "160" in density["thresholds"]
    assert view["naming"] == {"anchor": "sacrum", "status": "named", "text": "Levels counted up from the sacrum (S1)",
                              "cross_check": "", "notes": [note]}
    assert not any(m["text"].endswith("body volume") for m in view["measurements"])  # in the table, not twice
    html = to_html(view)
    assert "Levels counted up from the sacrum (S1)" in html and note in html
    assert "A/M/P 27.6/34.9/33.0 mm" in html and "104 HU" in html and "Pickhardt" in html
    assert html.index("<th>vertebra</th>") < html.index(">L1</a>") < html.index(">L2</a>")
    from SpineAILib.presentation import centre_from_link, centre_link
    assert centre_link(l1) in html and centre_from_link(centre_link(l1)) == (-6.0, 121.6, 386.3)
    assert centre_from_link("https://example.org") is None


def test_spine_ct_without_an_anchor_says_why_the_levels_are_not_named(tmp_path):
    reason = "no sacrum in view: no disc near the bottom of the column has the sacrum and the iliac bones under it"
    results = {
        "message": f"2 vertebra(e) found, not named: {reason}",
        "vertebrae": [{"name": "vertebra 1", "label": 101, "volume_ml": 18.7, "centre_ras": [7.0, 116.4, -769.3],
                       "cut_by_field_of_view": True},
                      {"name": "vertebra 2", "label": 102, "volume_ml": 92.2, "centre_ras": [4.5, 116.5, -788.1],
                       "cut_by_field_of_view": False}],
        "naming": {"anchor": None, "reason": reason, "discs": 2, "transitional_suspected": False, "notes": [],
                   "levels_not_named": 2},
        "measurements": [],
        "bone_density": {"vertebra": "L1", "hu_mean": None, "flag": None, "thresholds_hu": THRESHOLDS,
                         "source": PICKHARDT, "text": "L1 is not labelled in this image: bone density not assessed"},
    }
    view = _spine_ct_run(tmp_path / "run", results, warnings=[f"no anatomical anchor in view: levels not named ({reason})"])
    assert view["naming"]["text"] == f"Levels not named: {reason}"
    assert view["naming"]["anchor"] is None and view["naming"]["status"] == "not named"
    rows = view["vertebral_bodies"]["rows"]
    assert [r["name"] for r in rows] == ["vertebra 1", "vertebra 2"]
    assert rows[0]["notes"] == "cut by the field of view; not measured: levels not named"
    assert rows[1]["notes"] == "not measured: levels not named" and rows[1]["centre_ras"] == [4.5, 116.5, -788.1]
    density = view["vertebral_bodies"]["bone_density"]
    assert density["flag"] is None and density["text"] == "L1 is not labelled in this image: bone density not assessed"
    html = to_html(view)
    assert f"Levels not named: {html_escape(reason)}" in html and "not measured: levels not named" in html


def test_spine_ct_naming_warnings(tmp_path):
    from SpineAILib.presentation import level_naming

    partly = level_naming({"naming": {"anchor": "sacrum", "reason": "r", "discs": 9, "transitional_suspected": True,
                                      "notes": [], "levels_not_named": 2}}, "spine-ct")
    assert partly["status"] == "partly named"
    assert partly["text"].startswith("Levels counted up from the sacrum (S1); 2 vertebrae left unnamed")
    assert "transitional vertebra is suspected" in partly["text"]
    # a spine-ct naming block is recognised without the task too; a lumbar block is left as it was
    assert level_naming({"naming": {"anchor": None, "reason": "no spinal column found", "discs": 0}}) == {
        "anchor": None, "status": "not named", "text": "Levels not named: no spinal column found", "cross_check": "",
        "notes": []}
    assert level_naming({"naming": {"anchor": None, "status": "named"}}, "lumbar-mri") is None
    # other tasks: no table
    lumbar = _naming_run(tmp_path / "lumbar", {"anchor": "sacrum", "status": "named", "reasons": []})
    assert lumbar["vertebral_bodies"] is None and "<th>vertebra</th>" not in to_html(lumbar)
