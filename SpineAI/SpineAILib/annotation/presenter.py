"""What the two faces (web app, desktop module) show of an annotation session: one home for it.

Plain text and plain values, no GUI import: the web app puts them in its trame state, the
desktop module in its Qt labels. Every function reads an ``AnnotationSession`` (or its
``CaseData``) and nothing else, so both faces say the same thing in the same words.

``status_line(session)``
    ``'saved 10:02:03 · 14 edits · last: alice 10:02:01 paint'`` (the last save, how many
    edits, who made the last one, when, and what).
``frame_line(session, frame)``
    who labelled cine frame ``frame`` (0-based): ``'frame 4: alice 10:02:01'``,
    ``'frame 4: model'`` (prefilled, untouched) or ``'frame 4: not labelled'``.
``points_line(case)``
    the MRI disc points placed so far: ``'points: L3/L4, L4/L5'`` / ``'points: none'``.
``structures(case)``
    the structures a mask can hold: cord and CSF on a cine; the task's vertebrae (plus any
    other label already in the mask) on a volume.
``severity_grades(case)`` / ``fracture_choices(case)``
    ``{'L3/L4|spinal_canal_stenosis': 'Moderate'}`` / ``{'C4': 'yes', 'C5': 'no'}``.
``opened_message(case)`` / ``prefill_message(summary, run_folder)`` / ``undo_message(action)`` /
``redo_message(action)``
    the one-line results of those actions.
``panel(session, frame=None)``
    all of the above for the frame on screen, as one ``AnnotationPanel`` (what a face redraws
    after each edit).
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from SpineAILib.annotation.case import CINE_STRUCTURES, DISC_LEVELS, structure_name
from SpineAILib.vocabulary import CERVICAL_CT, CERVICAL_VERTEBRAE, LUMBAR_MRI_VERTEBRAE

FRACTURE_TEXT = {1: "yes", 0: "no"}


def _clock(iso_time):
    """'10:02:03' of an ISO 8601 time ('2025-01-31T10:02:03+01:00'); the text itself if shorter."""
    iso_time = iso_time or ""
    return iso_time[11:19] if len(iso_time) >= 19 else iso_time


def status_line(session):
    """'saved 10:02:03 · 14 edits · last: alice 10:02:01 paint'."""
    status = session.status()
    edits = status["edits"]
    text = f"saved {_clock(status['saved'])} · {edits} edit{'s' if edits != 1 else ''}"
    last = status["last_edit"]
    if last:
        text += f" · last: {last['user']} {_clock(last['time'])} {last['action']}"
    return text


def frame_line(session, frame):
    """Who labelled cine frame ``frame`` (0-based): 'frame 4: alice 10:02:01' / 'frame 4: model' /
    'frame 4: not labelled'. A user's edit names the user; a prefill names its source."""
    frame = int(frame or 0)
    item = f"labels/{frame}"
    source = session.case.sources.get(item, "")
    who = session.last_edit(item)
    by = f"{who['user']} {_clock(who['time'])}" if who and source == "user" else (source or "not labelled")
    return f"frame {frame + 1}: {by}"


def points_line(case):
    """'points: L3/L4, L4/L5' — the disc levels that have a point, in spine order."""
    return "points: " + (", ".join(level for level in DISC_LEVELS if level in case.points) or "none")


def structures(case):
    """Names a mask of this case can hold, in the order a picker lists them."""
    if case.is_cine:
        return list(CINE_STRUCTURES)
    base = list(CERVICAL_VERTEBRAE if case.task == CERVICAL_CT else LUMBAR_MRI_VERTEBRAE)
    present = []
    if case.mask is not None:
        present = [structure_name(v, "volume") for v in np.unique(case.mask) if v]
    return base + [name for name in present if name not in base]


def severity_grades(case):
    """{'level|condition': grade} of the grades set so far."""
    return {f"{level}|{condition}": grade for (level, condition), grade in case.severity.items()}


def fracture_choices(case):
    """{'C4': 'yes' / 'no'} of the vertebrae answered so far."""
    return {vertebra: FRACTURE_TEXT[int(fractured)] for vertebra, fractured in case.fractures.items()}


def opened_message(case):
    from SpineAILib.annotation.session import edit_count

    n = edit_count(case.edits)
    return f"case {Path(case.folder).name} opened ({n} edit{'s' if n != 1 else ''} so far)"


def prefill_message(summary, run_folder):
    """'prefilled 12 items from run-1, 2 of your edits kept (a warning; another)'."""
    kept = f", {summary['kept']} of your edits kept" if summary.get("kept") else ""
    warnings = summary.get("warnings") or []
    warn = f" ({'; '.join(warnings)})" if warnings else ""
    return f"prefilled {summary['set']} items from {Path(run_folder).name}{kept}{warn}"


def undo_message(action):
    return f"undid {action}" if action else "nothing to undo"


def redo_message(action):
    return f"redid {action}" if action else "nothing to redo"


@dataclass
class AnnotationPanel:
    """Everything a face shows of the open case for the frame on screen."""

    status: str
    can_undo: bool
    can_redo: bool
    frame_info: str  # frame_line on a cine, points_line on a volume
    labels: dict = field(default_factory=dict)  # the frame's labels (cine)
    severity: dict = field(default_factory=dict)  # severity_grades (volume)
    fractures: dict = field(default_factory=dict)  # fracture_choices (volume)
    structures: list = field(default_factory=list)


def panel(session, frame=None):
    """The ``AnnotationPanel`` of ``session`` with cine frame ``frame`` (0-based) on screen."""
    case = session.case
    status = session.status()
    view = AnnotationPanel(status=status_line(session), can_undo=bool(status["can_undo"]),
                           can_redo=bool(status["can_redo"]), frame_info="", structures=structures(case))
    if case.is_cine:
        frame = int(frame or 0)
        view.labels = case.frame_labels(frame)
        view.frame_info = frame_line(session, frame)
    else:
        view.severity = severity_grades(case)
        view.fractures = fracture_choices(case)
        view.frame_info = points_line(case)
    return view
