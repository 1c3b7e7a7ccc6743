"""A run's results as a reader sees them: every warning in full, a level × condition grade grid,
the fracture table with each threshold beside its probability, the ultrasound calls, the heat
map's colour legend, the measurements and (spine-ct) the vertebral-body table with the L1 bone-density
line — decided here, once, from the run's output folder.

GUI-free and shared by both front ends: the web app draws ``present(folder)`` (plain JSON) with
its own widgets; the desktop module shows ``to_html(present(folder))`` in a rich-text box. Reads
``report.json``, ``severity.tsv`` (lumbar-mri), ``fractures.tsv`` (cervical-ct) and the heat-map
files; writes nothing.
"""

import base64
import csv
import html
import json
import math
import re
from pathlib import Path

from SpineAILib.vocabulary import (SEVERITY_CONDITIONS, SEVERITY_GRADE_NAMES, SEVERITY_RESEARCH_NOTE, SPINE_CT,
                                  ULTRASOUND_LABELS)

GRADE_COLOURS = {"Normal/Mild": "#2e7d32", "Moderate": "#ef8f00", "Severe": "#c62828"}
# a research model's grades (not trained on patient labels): the same hues, greyed, so they do not read as a reading
RESEARCH_GRADE_COLOURS = {"Normal/Mild": "#5c6e5d", "Moderate": "#80735f", "Severe": "#7d6262"}
NOT_ASSESSED_COLOUR = "#5f6368"
GRADE_SHORT = {"Normal/Mild": "N/M", "Moderate": "Mod", "Severe": "Sev"}
CONDITION_TITLES = {
    "spinal_canal_stenosis": ("Canal", "spinal canal stenosis"),
    "left_neural_foraminal_narrowing": ("L foramen", "left neural foraminal narrowing"),
    "right_neural_foraminal_narrowing": ("R foramen", "right neural foraminal narrowing"),
    "left_subarticular_stenosis": ("L subart.", "left subarticular stenosis"),
    "right_subarticular_stenosis": ("R subart.", "right subarticular stenosis"),
}
CALL_COLOURS = {"fracture": "#c62828", "no fracture": "#2e7d32"}
LABEL_TITLES = {"bad_quality": "bad quality", "spinal_cord": "spinal cord", "csf": "CSF"}
HEATMAP_LOW = 0.2  # below this a heat map is transparent (scene.overlays.style_heatmap_display)
# Genant grade 0 (normal) neutral, 1-3 (mild, moderate, severe) increasingly alarming; white text on each
GENANT_COLOURS = {0: "#546e7a", 1: "#b8860b", 2: "#e65100", 3: "#b71c1c"}
GENANT_TITLES = {0: "normal", 1: "mild", 2: "moderate", 3: "severe"}
DENSITY_COLOURS = {"low": "#c62828", "indeterminate": "#ef8f00", "normal": "#2e7d32"}
CUT_TEXT = "cut by the field of view"


def _read_tsv(path):
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f, delimiter="\t"))
    except OSError:
        return None


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def read_report(folder):
    try:
        return json.loads((Path(folder) / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def compare(p, threshold):
    """'p 0.86 < 0.88': a probability with the threshold it was decided by."""
    if p is None:
        return "no probability"
    if threshold is None:
        return f"p {p:.2f}"
    return f"p {p:.2f} {'≥' if p >= threshold else '<'} {threshold:.2f}"


# -- lumbar-mri: the grade grid -------------------------------------------------------------------


def research_note(rows, severity=None):
    """The note a research model's grades are shown under ('' for a bundle trained on patient labels).

    The run decided it (report.json ``results.severity.research_output`` / ``research_note``,
    severity.tsv's ``research_output`` column); this only reads what it wrote.
    """
    severity = severity if isinstance(severity, dict) else {}
    flagged = bool(severity.get("research_output")) or any(str(r.get("research_output", "0")) == "1" for r in rows)
    return " ".join(str(severity.get("research_note") or SEVERITY_RESEARCH_NOTE).split()) if flagged else ""


def grade_grid(rows, severity=None):
    """severity.tsv rows (and report.json's severity block) -> {"columns", "rows", "collapsed", "legend",
    "research_output", "research_note"}.

    A level with at least one graded condition is a row of cells (grade, colour, the
    probabilities on hover); a level with none is one collapsed line with its reason.
    A research model's grades (``research_output``) are greyed, their probabilities still on
    hover, with ``research_note`` (what it is, and the line that replaces it) shown above the grid.
    """
    note = research_note(rows, severity)
    colours = RESEARCH_GRADE_COLOURS if note else GRADE_COLOURS
    columns = [{"key": c, "title": CONDITION_TITLES.get(c, (c, c))[0], "long": CONDITION_TITLES.get(c, (c, c))[1]}
               for c in SEVERITY_CONDITIONS]
    by_level = {}
    for row in rows:
        by_level.setdefault(row.get("level", "?"), {})[row.get("condition", "")] = row
    grid_rows, collapsed, previous = [], [], None
    for level, cells in by_level.items():
        assessed = [r for r in cells.values() if str(r.get("assessed", "0")) == "1"]
        if not assessed:
            reasons = sorted({(r.get("reason") or "not assessed") for r in cells.values()})
            located = [r for r in reasons if not r.startswith("not assessed: no ")]
            reasons = located or reasons  # "disc level not visible: ..." says it for every condition
            reason = "; ".join(reasons)
            if collapsed and collapsed[-1]["reason"] == reason and collapsed[-1].get("_last") == previous:
                collapsed[-1]["level"] = f"{collapsed[-1]['level'].split('–')[0]}–{level}"  # L3/L4–L5/S1
            else:
                collapsed.append({"level": level, "reason": reason})
            collapsed[-1]["_last"] = level
            previous = level
            continue
        previous = level
        out = []
        for c in SEVERITY_CONDITIONS:
            r = cells.get(c)
            long_name = CONDITION_TITLES.get(c, (c, c))[1]
            if r is None or str(r.get("assessed", "0")) != "1":
                reason = (r or {}).get("reason") or "not assessed"
                out.append({"grade": "not assessed", "text": "—", "colour": NOT_ASSESSED_COLOUR,
                            "title": f"{level} {long_name}: {reason}"})
                continue
            probabilities = [_number(r.get(f"p_{g}")) for g in ("normal_mild", "moderate", "severe")]
            shown = " · ".join(f"{name} {p:.2f}" for name, p in zip(SEVERITY_GRADE_NAMES, probabilities)
                               if p is not None)
            reason = f" — {r['reason']}" if r.get("reason") else ""
            series = f" ({r['series']})" if r.get("series") else ""
            grade = r.get("grade", "")
            research = f" [{note.split(';')[0]}]" if note else ""
            out.append({"grade": grade, "text": GRADE_SHORT.get(grade, grade), "colour": colours.get(grade, NOT_ASSESSED_COLOUR),
                        "title": f"{level} {long_name}: {grade} — p {shown}{series}{reason}{research}",
                        "estimated": bool(r.get("reason")), "research": bool(note)})
        grid_rows.append({"level": level, "cells": out})
    for c in collapsed:
        c.pop("_last", None)
    legend = [{"grade": g, "text": GRADE_SHORT[g], "colour": colours[g]} for g in SEVERITY_GRADE_NAMES]
    legend.append({"grade": "not assessed", "text": "—", "colour": NOT_ASSESSED_COLOUR})
    return {"columns": columns, "rows": grid_rows, "collapsed": collapsed, "legend": legend,
            "research_output": bool(note), "research_note": note}


# -- cervical-ct: fractures -----------------------------------------------------------------------


def fracture_table(rows):
    """fractures.tsv rows -> {"rows": scored vertebrae, "collapsed": runs of rows not scored, one line each}."""
    scored, collapsed = [], []
    for r in rows:
        p, threshold = _number(r.get("probability")), _number(r.get("threshold"))
        name = r.get("vertebra", "?")
        name = "patient" if name == "patient_overall" else name
        if p is None:
            reason = r.get("reason") or r.get("call") or "not assessed"
            if collapsed and collapsed[-1]["reason"] == reason:
                collapsed[-1]["names"].append(name)
            else:
                collapsed.append({"names": [name], "reason": reason})
            continue
        call = r.get("call", "")
        scored.append({"name": name, "call": call, "colour": CALL_COLOURS.get(call, NOT_ASSESSED_COLOUR),
                       "text": compare(p, threshold), "title": f"{name}: {call}, {compare(p, threshold)}"
                       + (f", {r['volume_ml']} ml" if _number(r.get("volume_ml")) is not None else "")})
    for c in collapsed:
        names = c.pop("names")
        c["names"] = names[0] if len(names) == 1 else f"{names[0]}–{names[-1]}"
    return {"rows": scored, "collapsed": collapsed}


# -- lp-ultrasound: the calls and their thresholds ------------------------------------------------


def _call_colour(label, called):
    if not called:
        return NOT_ASSESSED_COLOUR
    return "#c62828" if label == "bad_quality" else "#2e7d32"  # bad quality is the warning; cord, CSF the finding


def ultrasound_calls(folder, results):
    rows = _read_tsv(Path(folder) / "frames.tsv") or []
    thresholds = results.get("thresholds") or {}
    calls = []
    for label in ULTRASOUND_LABELS:
        values = [p for p in (_number(r.get(f"p_{label}")) for r in rows) if p is not None]
        if not values:
            continue
        called = sum(str(r.get(label, "0")) in ("1", "1.0", "True") for r in rows)
        top, threshold = max(values), _number(thresholds.get(label))
        calls.append({"name": LABEL_TITLES.get(label, label), "call": "called" if called else "not called",
                      "colour": _call_colour(label, called),
                      "text": f"{called} of {len(rows)} frames · highest {compare(top, threshold)}",
                      "title": f"{LABEL_TITLES.get(label, label)}: a frame is called when its smoothed probability "
                               f"reaches the threshold" + (f" {threshold:.2f}" if threshold is not None else "")})
    return calls


# -- heat map and measurements --------------------------------------------------------------------


def heatmap_legend(folder, task, results, grid=None, fractures=None, calls=None):
    """The colour legend of the run's heat map and a note when nothing was called (a dark map)."""
    from SpineAILib.results import is_heatmap_file, result_files

    if not any(is_heatmap_file(p) for p in result_files(folder)):
        return None
    stops = []
    try:
        import numpy as np

        from SpineAILib.colourmaps import heatmap_to_rgb

        rgb = heatmap_to_rgb(np.linspace(HEATMAP_LOW, 1.0, 6, dtype=np.float32)[None], "jet")[0]
        stops = ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in rgb]
    except Exception:  # no OpenCV: the jet colours by hand
        stops = ["#0000ff", "#00aaff", "#44ff88", "#ffee00", "#ff5500", "#aa0000"]
    note = ""
    if task == "lumbar-mri" and grid is not None:
        abnormal = sum(c["grade"] in ("Moderate", "Severe") for r in grid["rows"] for c in r["cells"])
        if not abnormal:
            note = "no level was graded moderate or severe: the heat map stays dark (it is scaled by p(abnormal))"
    elif task == "cervical-ct" and fractures is not None:
        if not any(r["call"] == "fracture" for r in fractures["rows"]):
            note = "no fracture was called: the heat map shows where the model looked, not a finding"
    elif task == "lp-ultrasound" and calls is not None:
        if not any(c["call"] == "called" for c in calls if c["name"] != "bad quality"):
            note = "no spinal cord or CSF frame was called: the heat map shows where the model looked, not a finding"
    return {"gradient": f"linear-gradient(to right, {', '.join(stops)})", "stops": stops,
            "low": f"{HEATMAP_LOW:g}", "high": "1", "caption": f"heat (below {HEATMAP_LOW:g}: transparent)",
            "note": note}


def measurements(results):
    out = []
    for v in results.get("vertebrae") or []:
        if isinstance(v, dict) and v.get("volume_ml") is not None:
            out.append({"name": v.get("name", "?"), "text": f"{v['volume_ml']} ml body volume"})
    for d in results.get("disc_levels") or []:
        if isinstance(d, dict) and d.get("height_mm") is not None:
            out.append({"name": d.get("level", "?"), "text": f"disc height {d['height_mm']} mm"})
    return out


def level_naming(results, task=""):
    """How a run named its levels (report.json results.naming), in words, or None.

    lumbar-mri: {"anchor", "status", "text", "cross_check"}: the anchor (``sacrum``: counted up from
    S1; ``column``: from the level model's own run of names), whether any name is withheld and why,
    and what the other count said — so a reader sees what the names rest on. spine-ct (its naming
    block has ``discs``, no ``status``): the same keys and ``notes``, see ``spine_ct_naming``."""
    naming = results.get("naming")
    if not isinstance(naming, dict):
        return None
    if task == SPINE_CT or ("discs" in naming and "status" not in naming):
        return spine_ct_naming(naming)
    if not naming.get("anchor"):
        return None
    anchor, status = str(naming["anchor"]), str(naming.get("status") or "named")
    sacrum = naming.get("sacrum") if isinstance(naming.get("sacrum"), dict) else {}
    if anchor == "sacrum":
        text = "Levels counted up from S1 (the sacrum)"
    else:
        text = f"Levels named from the column, top down: S1 not used ({sacrum.get('reason') or 'not in view'})"
    if status != "named":
        text += f"; names {status}: " + "; ".join(str(r) for r in naming.get("reasons") or [])
    cross = naming.get("cross_check") if isinstance(naming.get("cross_check"), dict) else {}
    check = ""
    if cross:
        check = ("the level model's own top-down names agree" if cross.get("agree") else
                 "the level model's own top-down names differ: " + ", ".join(
                     f"{d.get('column')} (column) / {d.get('sacrum')} (from S1)" for d in cross.get("differ") or []))  # fmt: skip
    return {"anchor": anchor, "status": status, "text": text, "cross_check": check}


def _plural(n, one, many):
    return f"{n} {one if n == 1 else many}"


SPINE_CT_ANCHORS = {
    "sacrum": "Levels counted up from the sacrum (S1)",
    "last rib": "Levels counted from the last rib-bearing vertebra (T12); the sacrum is not in view to check the count",
    "sacrum and last rib": "Levels counted from the sacrum (S1) and the last rib-bearing vertebra (T12): they agree",
}


def spine_ct_naming(naming):
    """spine-ct's naming block in words: {"anchor", "status", "text", "cross_check": "", "notes"}.

    Anchor ``sacrum``, ``last rib`` or both: SPINE_CT_ANCHORS, with the vertebrae left unnamed (their
    reason is among the run's warnings) and a suspected transitional vertebra said; no anchor:
    "Levels not named: <reason>". ``notes``: what the count cannot exclude (the workflow's notes)."""
    anchor = naming.get("anchor") or None
    reason = " ".join(str(naming.get("reason") or "no anatomical anchor in view").split())
    unnamed = int(_number(naming.get("levels_not_named")) or 0)
    notes = [" ".join(str(n).split()) for n in naming.get("notes") or [] if str(n).strip()]
    if anchor in SPINE_CT_ANCHORS:
        text, status = SPINE_CT_ANCHORS[anchor], "named"
        if unnamed:
            status = "partly named"
            text += (f"; {_plural(unnamed, 'vertebra', 'vertebrae')} left unnamed "
                     "(the count could not go on safely, or too little of it is in view: see the warnings)")
    elif anchor:
        text, status = f"Levels counted from the {anchor}", "named"
    else:
        text, status = f"Levels not named: {reason}", "not named"
    if naming.get("transitional_suspected"):
        text += "; a lumbosacral transitional vertebra is suspected: the level count is uncertain"
    return {"anchor": anchor, "status": status, "text": text, "cross_check": "", "notes": notes}


# -- spine-ct (and `spineai measure`): vertebral bodies and L1 bone density ---------------------------


def _mm(value):
    value = _number(value)
    return "—" if value is None else f"{value:.1f}"


def _centre(value):
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(_number(v) is not None for v in value):
        return [float(v) for v in value]
    return None


def _notes_text(notes):
    if isinstance(notes, str):
        notes = notes.split(";")
    return [" ".join(str(n).split()) for n in notes or [] if str(n).strip()]


def vertebral_body_row(measured, vertebra=None, named=True):
    """One vertebra's row: {"name", "heights" ("A/M/P 27.6/34.9/33.0 mm" or "—"), "grade" (0-3 or None),
    "grade_text" ("0", "2 wedge", "1 wedge (borderline 0–2)", "—"), "colour", "hu" ("104 HU" or "—"), "notes", "cut", "centre_ras",
    "title"}. ``measured``: a ``vertebral_bodies`` row (report.json results.measurements), or None for
    a vertebra that was not measured; ``vertebra``: its results.vertebrae entry; ``named``: False when
    the run named no level (then nothing is measured)."""
    m, v = measured or {}, vertebra or {}
    name = str(m.get("name") or v.get("name") or "?")
    cut = bool(m.get("cut_by_field_of_view", v.get("cut_by_field_of_view")))
    heights = [_number(m.get(f"{k}_height_mm")) for k in ("anterior", "middle", "posterior")]
    heights_text = "—" if all(h is None for h in heights) else f"A/M/P {'/'.join(_mm(h) for h in heights)} mm"
    grade = _number(m.get("genant_grade"))
    grade = None if grade is None else int(grade)
    morphology = str(m.get("genant_morphology") or "").strip()
    if grade is None:
        grade_text, colour = "—", NOT_ASSESSED_COLOUR
    else:
        grade_text = f"{grade} {morphology}".strip() if grade else "0"
        span = m.get("genant_grade_range")
        span = [_number(g) for g in span] if isinstance(span, (list, tuple)) and len(span) == 2 else [None]
        if m.get("genant_borderline") and None not in span:  # another grade is within the heights' tolerance
            grade_text += f" (borderline {span[0]:.0f}–{span[1]:.0f})"
        colour = GENANT_COLOURS.get(grade, GENANT_COLOURS[3])
    hu = _number(m.get("hu_mean"))
    notes = _notes_text(m.get("notes"))
    if measured is None:
        notes.insert(0, "not measured: levels not named" if not named else "not measured")
    if cut and not any(CUT_TEXT in n for n in notes):
        notes.insert(0, CUT_TEXT)
    title = [name]
    if grade is not None:
        loss = _number(m.get("height_loss_percent"))
        title.append(f"Genant grade {grade} ({GENANT_TITLES.get(grade, '?')}"
                     + (f", {morphology}" if morphology else "") + ")"
                     + (f", height loss {loss:.0f} %" if loss is not None else "")
                     + (f" against the {m['genant_reference']}" if m.get("genant_reference") else "")
                     + (", borderline" if m.get("genant_borderline") else ""))
    volume = _number(m.get("volume_ml", v.get("volume_ml")))
    if volume is not None:
        title.append(f"{volume:g} ml labelled")
    return {"name": name, "heights": heights_text, "grade": grade, "grade_text": grade_text, "colour": colour,
            "hu": "—" if hu is None else f"{hu:.0f} HU", "notes": "; ".join(notes), "cut": cut,
            "centre_ras": _centre(m.get("centre_ras")) or _centre(v.get("centre_ras")), "title": " · ".join(title)}


def bone_density_line(density):
    """report.json results.bone_density -> {"text", "flag", "colour", "thresholds", "source"}, or None."""
    if not isinstance(density, dict) or not density.get("text"):
        return None
    flag = density.get("flag") or None
    thresholds = density.get("thresholds_hu") if isinstance(density.get("thresholds_hu"), dict) else {}
    low, normal = _number(thresholds.get("osteoporosis_likely_at_or_below")), _number(thresholds.get("normal_above"))
    parts = []
    if low is not None:
        parts.append(f"≤ {low:.0f} HU osteoporosis likely")
    if low is not None and normal is not None:
        parts.append(f"{low:.0f}–{normal:.0f} HU indeterminate")
    if normal is not None:
        parts.append(f"> {normal:.0f} HU unlikely")
    return {"text": " ".join(str(density["text"]).split()), "flag": flag,
            "colour": DENSITY_COLOURS.get(flag, NOT_ASSESSED_COLOUR),
            "thresholds": f"{density.get('vertebra') or 'L1'} trabecular HU: " + ", ".join(parts) if parts else "",
            "source": " ".join(str(density.get("source") or "").split())}


def vertebral_bodies(results):
    """A spine-ct run's vertebrae as a table (report.json results.measurements and .vertebrae), or None.

    {"rows": ``vertebral_body_row`` each, top to bottom; "bone_density": ``bone_density_line``;
    "legend": the Genant colours}. A vertebra found but not measured (cut, S1, or levels not
    named) still has its row, saying why; ``centre_ras`` is where a click on the row centres the views."""
    measured = [m for m in results.get("measurements") or [] if isinstance(m, dict)]
    density = bone_density_line(results.get("bone_density"))
    if not measured and density is None:
        return None
    found = [v for v in results.get("vertebrae") or [] if isinstance(v, dict)]
    naming = results.get("naming") if isinstance(results.get("naming"), dict) else {}
    named = bool(naming.get("anchor")) or bool(measured)
    by_name = {str(m.get("name")): m for m in measured}
    rows, seen = [], set()
    for v in found:
        name = str(v.get("name"))
        rows.append(vertebral_body_row(by_name.get(name), v, named))
        seen.add(name)
    rows.extend(vertebral_body_row(m) for m in measured if str(m.get("name")) not in seen)
    legend = [{"grade": g, "text": f"{g} {GENANT_TITLES[g]}", "colour": c} for g, c in GENANT_COLOURS.items()]
    return {"rows": rows, "bone_density": density, "legend": legend}


_CENTRE_LINK = re.compile(r"centre[:=](-?[\d.]+),(-?[\d.]+),(-?[\d.]+)")


def centre_link(row):
    """The link ``to_html`` puts on a vertebral-body row's name ('' without a centre)."""
    c = row.get("centre_ras")
    return f"#centre={c[0]:.2f},{c[1]:.2f},{c[2]:.2f}" if c else ""


def centre_from_link(link):
    """(r, a, s) of a link ``centre_link`` made (the desktop module's results box), or None."""
    match = _CENTRE_LINK.search(str(link))
    return tuple(float(v) for v in match.groups()) if match else None


# -- everything at once ---------------------------------------------------------------------------


PICTURE_MAX_BYTES = 4 << 20  # a larger heights picture is not the one spine-ct writes: not shown
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def heights_picture(folder, report):
    """The run's picture of the measured heights (spine-ct's ``heights.png``, named in report.json's outputs):
    {"path", "data_url" (to show it in a browser), "caption"}, or None when it is absent, a link, too large or
    no PNG."""
    outputs = report.get("outputs") if isinstance(report.get("outputs"), dict) else {}
    name = outputs.get("heights_picture")
    if not isinstance(name, str) or Path(name).name != name:  # a bare file name in the run folder, nothing else
        return None
    path = Path(folder) / name
    try:  # a link could bring in a picture from anywhere: the run's own file only
        if path.is_symlink() or not path.is_file() or path.stat().st_size > PICTURE_MAX_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(PNG_SIGNATURE):
        return None
    return {"path": str(path), "data_url": "data:image/png;base64," + base64.b64encode(data).decode("ascii"),
            "caption": "Body heights on the mid-sagittal slice: anterior (green), middle (yellow), posterior (cyan)"}


def present(folder):
    """What a front end shows for the run in ``folder`` (plain JSON-able values)."""
    folder = Path(folder)
    report = read_report(folder)
    results = report.get("results") or {}
    task = report.get("task") or ""
    warnings = [" ".join(str(w).split()) for w in report.get("warnings") or []]
    grid = fractures = calls = None
    severity = _read_tsv(folder / "severity.tsv")
    if severity:
        grid = grade_grid(severity, results.get("severity"))
    fracture_rows = _read_tsv(folder / "fractures.tsv")
    if fracture_rows:
        fractures = fracture_table(fracture_rows)
    if task == "lp-ultrasound" or (folder / "frames.tsv").is_file():
        calls = ultrasound_calls(folder, results) or None
    message = str(results.get("message") or results.get("summary") or "").strip()
    bodies = vertebral_bodies(results)
    if bodies:
        bodies["picture"] = heights_picture(folder, report)
    shown = measurements(results)
    if bodies:  # the vertebrae's volumes are in the table (on hover); the disc heights stay
        shown = [m for m in shown if not m["text"].endswith("body volume")]
    return {
        "folder": str(folder), "task": task, "message": message, "warnings": warnings,
        "grid": grid, "fractures": fractures, "calls": calls,
        "heatmap": heatmap_legend(folder, task, results, grid, fractures, calls),
        "measurements": shown,
        "naming": level_naming(results, task),
        "vertebral_bodies": bodies,
    }


def to_html(view):
    """``present()``'s result as rich text (Qt's subset of HTML: tables, bgcolor, font colour)."""
    e = html.escape
    parts = []
    if view.get("message"):
        parts.append(f"<p><b>{e(view.get('task', ''))}</b>: {e(view['message'])}</p>")
    if view.get("warnings"):
        items = "".join(f"<li>{e(w)}</li>" for w in view["warnings"])
        parts.append(f"<div style='background:#5d4037;color:#ffe0b2;padding:4px'><b>"
                     f"{len(view['warnings'])} warning{'s' if len(view['warnings']) > 1 else ''}</b><ul>{items}</ul></div>")
    naming = view.get("naming")
    if naming:
        check = f" ({e(naming['cross_check'])})" if naming.get("cross_check") else ""
        parts.append(f"<p><b>Level names</b>: {e(naming['text'])}{check}</p>")
        parts.extend(f"<p><font color='#9e9e9e'>{e(n)}</font></p>" for n in naming.get("notes") or [])
    parts.extend(_bodies_html(view.get("vertebral_bodies")))
    grid = view.get("grid")
    if grid:
        if grid.get("research_note"):
            parts.append(f"<p style='background:#424242;color:#e0e0e0;padding:4px'><b>{e(grid['research_note'])}</b></p>")
        head = "".join(f"<th title='{e(c['long'])}'>{e(c['title'])}</th>" for c in grid["columns"])
        body = "".join(
            "<tr><td><b>" + e(r["level"]) + "</b></td>"
            + "".join(f"<td bgcolor='{c['colour']}' align='center' title='{e(c['title'])}'>"
                      f"<font color='white'>{e(c['text'])}</font></td>" for c in r["cells"]) + "</tr>"
            for r in grid["rows"])
        parts.append(f"<table border='0' cellspacing='2' cellpadding='3'><tr><th>level</th>{head}</tr>{body}</table>")
        parts.extend(f"<p><font color='#9e9e9e'>{e(c['level'])} not assessed: {e(c['reason'])}</font></p>"
                     for c in grid["collapsed"])
        parts.append("<p>" + " ".join(f"<font color='{g['colour']}'>■</font> {e(g['grade'])}" for g in grid["legend"]) + "</p>")
    fractures = view.get("fractures")
    if fractures:
        body = "".join(f"<tr><td><b>{e(r['name'])}</b></td><td><font color='{r['colour']}'>{e(r['call'])}</font></td>"
                       f"<td>{e(r['text'])}</td></tr>" for r in fractures["rows"])
        if body:
            parts.append(f"<table cellpadding='3'>{body}</table>")
        parts.extend(f"<p><font color='#9e9e9e'>{e(c['names'])}: {e(c['reason'])}</font></p>" for c in fractures["collapsed"])
    for c in view.get("calls") or []:
        parts.append(f"<p><b>{e(c['name'])}</b>: <font color='{c['colour']}'>{e(c['call'])}</font> — {e(c['text'])}</p>")
    legend = view.get("heatmap")
    if legend:
        cells = "".join(f"<td bgcolor='{s}' width='24'>&nbsp;</td>" for s in legend["stops"])
        parts.append(f"<table cellspacing='0'><tr><td>{e(legend['low'])}&nbsp;</td>{cells}<td>&nbsp;{e(legend['high'])}</td>"
                     f"</tr></table><p><font color='#9e9e9e'>{e(legend['caption'])}</font></p>")
        if legend.get("note"):
            parts.append(f"<p><i>{e(legend['note'])}</i></p>")
    if view.get("measurements"):
        parts.append("<p>" + "<br>".join(f"{e(m['name'])}: {e(m['text'])}" for m in view["measurements"]) + "</p>")
    return "\n".join(parts)


def _bodies_html(bodies):
    """The vertebral-body table and the bone-density line as rich text; each name links to its centre
    (``centre_link``: the desktop module centres the views on a click)."""
    if not bodies:
        return []
    e = html.escape
    parts = []
    density = bodies.get("bone_density")
    if density:
        parts.append(f"<p><b>Bone density</b>: <font color='{density['colour']}'>{e(density['text'])}</font>"
                     + (f"<br><font color='#9e9e9e'>{e(density['thresholds'])} — {e(density['source'])}</font>"
                        if density.get("thresholds") else "") + "</p>")
    if bodies.get("rows"):
        head = "".join(f"<th>{t}</th>" for t in ("vertebra", "heights", "Genant", "HU", "notes"))
        body = "".join(
            "<tr>"
            + (f"<td><b><a href='{centre_link(r)}'>{e(r['name'])}</a></b></td>" if centre_link(r)
               else f"<td><b>{e(r['name'])}</b></td>")
            + f"<td>{e(r['heights'])}</td>"
            + f"<td bgcolor='{r['colour']}' align='center' title='{e(r['title'])}'><font color='white'>"
              f"{e(r['grade_text'])}</font></td>"
            + f"<td align='right'>{e(r['hu'])}</td><td><font color='#9e9e9e'>{e(r['notes'])}</font></td></tr>"
            for r in bodies["rows"])
        parts.append(f"<table border='0' cellspacing='2' cellpadding='3'><tr>{head}</tr>{body}</table>")
        parts.append("<p>Genant: " + " ".join(f"<font color='{g['colour']}'>■</font> {e(g['text'])}"
                                              for g in bodies.get("legend") or []) + "</p>")
    picture = bodies.get("picture")
    if picture:
        parts.append(f"<p>{e(picture['caption'])}<br><img src='{e(Path(picture['path']).as_uri())}' width='360'></p>")
    return parts
