"""The results as a reader sees them (SpineAILib.presentation, shared by the web app and the
desktop module): every warning in full, the grade grid, the fracture table with thresholds."""

import json

from SpineAILib.presentation import present, to_html

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
