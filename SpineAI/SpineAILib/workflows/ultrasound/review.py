"""Reviewing an ultrasound run frame by frame: what the viewers show beside the playing cine.

``CineReview.from_folder(run_folder)`` reads an lp-ultrasound run's ``frames.tsv`` (the
per-frame probabilities and calls) and ``report.json`` (best frames, the timeline picture and
where its time axis lies) and answers the front ends' questions, so the web app and the
desktop module decide nothing themselves:

* ``calls_line(i)`` / ``parts(i)``: "frame 12 / 300 · 366.7 ms — bad quality: no (p 0.03) ·
  spinal cord: YES (p 0.91) · CSF: no (p 0.12)" for the frame on screen; frames are counted
  from 1 on screen, as the cine player does (frames.tsv and report.json count from 0);
* ``next_best(current)``: the "Best frame" button: report.json's best frames in rank order,
  one further on each press (back to the first after the last); with no best frame (no CSF
  called) the most usable frame, the one with the lowest p(bad quality);
* ``timeline``, ``cursor_fraction(i)``, ``frame_at_fraction(x)``: the timeline picture, where
  frame i lies across it, and which frame a click at x (0..1 of its width) means;
* ``heatmap``: the per-frame heat-map file, when the run wrote one.
"""

import base64
import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from SpineAILib.errors import InputError

TABLE = "frames.tsv"
from SpineAILib.vocabulary import ULTRASOUND_LABELS as LABELS

LABEL_NAMES = {"bad_quality": "bad quality", "spinal_cord": "spinal cord", "csf": "CSF"}
SEPARATOR = " · "


@dataclass
class CineReview:
    folder: Path
    times_ms: np.ndarray  # (N,)
    probabilities: dict  # label -> (N,) float
    calls: dict  # label -> (N,) int 0/1
    best: list = field(default_factory=list)  # frame indices, best first
    timeline: Path = None
    timeline_axes: dict = None  # {'x_fraction': [l, r], 'time_s': [t0, t1]}
    heatmap: Path = None

    # -- reading -----------------------------------------------------------------------

    @classmethod
    def from_folder(cls, folder):
        """The review of an lp-ultrasound output folder, or None when it holds no frames.tsv
        (another task's results). A frames.tsv without the per-frame columns is refused."""
        folder = Path(folder)
        table = folder / TABLE
        if not table.is_file():
            return None
        times, probabilities, calls = _read_table(table)
        report = _read_report(folder)
        results = report.get("results") or {}
        outputs = report.get("outputs") or {}
        n = len(times)
        best = [int(b["frame"]) for b in results.get("best_frames") or [] if 0 <= int(b.get("frame", -1)) < n]
        timeline = folder / outputs.get("timeline", "timeline.png")
        heatmap = folder / outputs.get("heatmap", "heatmap.seq.nrrd")
        axes = results.get("timeline_axes") or None
        if axes and not (len(axes.get("x_fraction", ())) == 2 and len(axes.get("time_s", ())) == 2):
            axes = None
        return cls(folder=folder, times_ms=times, probabilities=probabilities, calls=calls, best=best,
                   timeline=timeline if timeline.is_file() else None, timeline_axes=axes,
                   heatmap=heatmap if heatmap.is_file() else None)

    @property
    def n_frames(self):
        return len(self.times_ms)

    def matches(self, n_frames):
        """Does this review belong to a cine of ``n_frames`` frames?"""
        return int(n_frames) == self.n_frames

    # -- the calls of one frame ------------------------------------------------------------

    def parts(self, index):
        """[{'label', 'text', 'called', 'p'}] for frame ``index`` (0-based); [] out of range."""
        if not 0 <= int(index) < self.n_frames:
            return []
        out = []
        for label in LABELS:
            if label not in self.calls:
                continue
            called = bool(self.calls[label][index])
            p = float(self.probabilities[label][index])
            out.append({"label": label, "called": called, "p": round(p, 4),
                        "text": f"{LABEL_NAMES[label]}: {'YES' if called else 'no'} (p {p:.2f})"})
        return out

    def frame_text(self, index):
        """'frame 12 / 300 · 366.7 ms' (counted from 1, as the cine player shows it)."""
        if not 0 <= int(index) < self.n_frames:
            return ""
        return f"frame {int(index) + 1} / {self.n_frames}{SEPARATOR}{self.times_ms[index]:.1f} ms"

    def calls_line(self, index):
        """The whole line for frame ``index``: frame, time and the three calls; '' out of range."""
        parts = self.parts(index)
        if not parts:
            return ""
        return f"{self.frame_text(index)} — " + SEPARATOR.join(p["text"] for p in parts)

    def overview(self):
        """One line on the whole run: 'CSF called in 22 of 30 frames, cord in 24; 3 best frames'."""
        n = self.n_frames
        csf, cord = int(self.calls["csf"].sum()), int(self.calls["spinal_cord"].sum())
        bad = int(self.calls["bad_quality"].sum())
        best = f"{len(self.best)} best frame{'s' if len(self.best) != 1 else ''}" if self.best else "no best frame"
        return f"CSF called in {csf} of {n} frames, spinal cord in {cord}, bad quality in {bad}; {best}"

    # -- best frame ------------------------------------------------------------------------

    def most_usable_frame(self):
        """The frame with the lowest p(bad quality) (what the run pictures when no frame shows CSF)."""
        p_bad = self.probabilities.get("bad_quality")
        return int(np.argmin(p_bad)) if p_bad is not None and len(p_bad) else 0

    def next_best(self, current=None):
        """(frame index, message) the "Best frame" button goes to from frame ``current``."""
        if self.n_frames == 0:
            return None, "the run has no frames"
        if not self.best:
            index = self.most_usable_frame()
            return index, (f"no frame with CSF called: most usable frame {index + 1} "
                           f"(p bad quality {self.probabilities['bad_quality'][index]:.2f})")
        rank = (self.best.index(current) + 1) % len(self.best) if current in self.best else 0
        index = self.best[rank]
        p_csf = self.probabilities.get("csf")
        detail = f", p CSF {p_csf[index]:.2f}" if p_csf is not None else ""
        return index, f"best frame {rank + 1} of {len(self.best)}: frame {index + 1}{detail}"

    # -- timeline --------------------------------------------------------------------------

    def cursor_fraction(self, index):
        """Where frame ``index`` lies across the timeline picture (0..1 of its width), or None."""
        if self.timeline_axes is None or not 0 <= int(index) < self.n_frames:
            return None
        (left, right), (t0, t1) = self.timeline_axes["x_fraction"], self.timeline_axes["time_s"]
        if t1 <= t0:
            return None
        x = left + (self.times_ms[index] / 1000.0 - t0) / (t1 - t0) * (right - left)
        return float(min(max(x, 0.0), 1.0))

    def frame_at_fraction(self, x):
        """The frame nearest in time to a click at ``x`` (0..1 of the picture's width); None
        when the click is outside the time axis or the axis is unknown."""
        if self.timeline_axes is None or self.n_frames == 0:
            return None
        (left, right), (t0, t1) = self.timeline_axes["x_fraction"], self.timeline_axes["time_s"]
        if right <= left or not left <= float(x) <= right:
            return None
        t_ms = (t0 + (float(x) - left) / (right - left) * (t1 - t0)) * 1000.0
        return int(np.argmin(np.abs(self.times_ms - t_ms)))

    def timeline_data_url(self):
        """The timeline picture as a data: URL (a browser cannot read the server's files), or ''."""
        if self.timeline is None:
            return ""
        return "data:image/png;base64," + base64.b64encode(self.timeline.read_bytes()).decode("ascii")


def _read_table(path):
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: cannot read the per-frame table ({error})") from None
    columns = set(rows[0]) if rows else set()
    needed = {"frame", "time_ms"} | {f"p_{label}" for label in LABELS} | set(LABELS)
    if not rows or not needed <= columns:
        missing = ", ".join(sorted(needed - columns)) or "rows"
        raise InputError(f"{path}: not an lp-ultrasound frame table (missing {missing})")
    try:
        rows.sort(key=lambda r: int(r["frame"]))
        if [int(r["frame"]) for r in rows] != list(range(len(rows))):
            raise ValueError("frames are not numbered 0..N-1")
        times = np.array([float(r["time_ms"]) for r in rows])
        probabilities = {label: np.array([float(r[f"p_{label}"]) for r in rows]) for label in LABELS}
        calls = {label: np.array([int(float(r[label])) for r in rows]) for label in LABELS}
    except ValueError as error:
        raise InputError(f"{path}: bad value in the frame table ({error})") from None
    return times, probabilities, calls


def _read_report(folder):
    try:
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # the table alone still gives the calls
    return report if isinstance(report, dict) else {}


def review_browser(ctx, review):
    """The sequence browser of the cine a review belongs to (same number of frames), or None."""
    from SpineAILib.scene.cine_overlays import cine_browser_for

    return cine_browser_for(ctx, review.n_frames) if review is not None else None
