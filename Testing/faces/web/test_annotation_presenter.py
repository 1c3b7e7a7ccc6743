"""``SpineAILib.annotation.presenter``: the words both faces (web panel, desktop module) show for a
case, from a real session on a real case folder (no GUI)."""

import re

import numpy as np


def _cine(n=4):
    from SpineAILib.images import Cine

    frames = np.zeros((n, 24, 32), np.uint8)
    frames[:, 8:16, 10:22] = 200
    return Cine(frames=frames, frame_times_ms=np.arange(n) * 33.3, pixel_spacing=(0.2, 0.2), modality="US")


def test_status_and_frame_lines_of_a_cine_case(tmp_path):
    from SpineAILib.annotation import presenter
    from SpineAILib.annotation.session import AnnotationSession

    with AnnotationSession.open(tmp_path / "case", image_path=tmp_path / "cine.dcm", task="lp-ultrasound",
                                image=_cine(), user="alice") as session:
        assert presenter.frame_line(session, 1) == "frame 2: not labelled"
        assert presenter.opened_message(session.case) == "case case opened (0 edits so far)"
        session.toggle_label(1, "csf")
        line = presenter.status_line(session)
        assert re.fullmatch(r"saved \d\d:\d\d:\d\d · 1 edit · last: alice \d\d:\d\d:\d\d toggle\S*", line), line
        assert re.fullmatch(r"frame 2: alice \d\d:\d\d:\d\d", presenter.frame_line(session, 1))
        session.toggle_label(1, "spinal_cord")
        assert " · 2 edits · " in presenter.status_line(session)
        shown = presenter.panel(session, 1)
        assert shown.labels["csf"] == 1 and shown.labels["spinal_cord"] == 1 and shown.can_undo and not shown.can_redo
        assert shown.frame_info == presenter.frame_line(session, 1) and shown.status == presenter.status_line(session)
        assert shown.structures == ["spinal_cord", "csf"]
        action = session.undo()
        assert presenter.undo_message(action) == f"undid {action}" and presenter.redo_message(None) == "nothing to redo"


def test_messages_of_prefill_and_volume_cases():
    from types import SimpleNamespace

    from SpineAILib.annotation import presenter

    summary = {"set": 12, "kept": 2, "warnings": ["no masks in this run"]}
    assert presenter.prefill_message(summary, "/runs/lp-1") == \
        "prefilled 12 items from lp-1, 2 of your edits kept (no masks in this run)"
    assert presenter.prefill_message({"set": 3, "kept": 0, "warnings": []}, "/runs/lp-1") == "prefilled 3 items from lp-1"
    case = SimpleNamespace(points={"L4/L5": (0, 0, 0), "L1/L2": (0, 0, 0)}, severity={("L4/L5", "spinal_canal_stenosis"):
                           "Moderate"}, fractures={"C4": True, "C5": False}, is_cine=False, task="cervical-ct", mask=None)
    assert presenter.points_line(case) == "points: L1/L2, L4/L5"
    assert presenter.severity_grades(case) == {"L4/L5|spinal_canal_stenosis": "Moderate"}
    assert presenter.fracture_choices(case) == {"C4": "yes", "C5": "no"}
    assert presenter.structures(case)[:2] == ["C1", "C2"]
