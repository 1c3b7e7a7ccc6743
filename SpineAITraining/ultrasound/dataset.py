"""The LP-ultrasound classifier's data: the seeds' layout read into per-video records, the videos
it trains on (read from a layout, generated, or synthetic negatives) and their splits by video.

Layout (what ``generator.write_seed_layout`` writes, and what the seeds used)::

    root/<video>/frame_0001.png ...          one folder of frames per video
    root/labels.csv                          video, frame_file, bad_quality, spinal_cord, fluid (0/1)
    root/<video>/masks/frame_0001_cord.png   optional masks (nonzero = structure)
    root/<video>/masks/frame_0001_csf.png
    root/machines.csv                        optional: video, machine, view

Optional columns of the labels table: ``split`` (train / validation / test, constant per
video: a SpineAI dataset export writes it and the trainers then use it instead of their
own split) and ``time_ms`` (frame times, for the temporal smoothing).

Also accepted: the plain seeds' table without masks or machines; column names matched
case-insensitively with spaces/underscores/hyphens ignored ("Bad quality",
"bad_quality"; "Spinal Cord", "spinal_cord", "cord"; "Fluid", "Spinal Fluid", "csf");
no video column when the frame column holds "<video>/<file>" paths or the file names
are unique across video folders; one labels table per video folder
(``root/<video>/labels.csv``) instead of one at the root.

Splits are by video: frames of one video are nearly identical, so putting them on
both sides of a split inflates the score. ``split_frames`` does it the leaky way
only so a report can show users how much (``--leaky-comparison``).
"""

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from SpineAILib.errors import InputError
from SpineAILib.vocabulary import ULTRASOUND_LABELS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# normalised column name -> role
_COLUMN_ROLES = {
    "video": "video", "videoid": "video", "video_id": "video", "folder": "video", "subfolder": "video", "clip": "video",
    "framefile": "frame", "frame": "frame", "file": "frame", "filename": "frame", "image": "frame",
    "imagefile": "frame", "imagepath": "frame", "path": "frame", "framepath": "frame", "imagename": "frame",
    "badquality": "bad_quality", "bad": "bad_quality", "quality": None, "badimagequality": "bad_quality",
    "spinalcord": "spinal_cord", "cord": "spinal_cord",
    "fluid": "csf", "csf": "csf", "spinalfluid": "csf", "cerebrospinalfluid": "csf",
    "split": "split", "part": "split", "subset": "split", "timems": "time_ms",
}
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "test": "test", "testing": "test"}  # fmt: skip
_SEEDS_NAMES = {"bad_quality": "bad quality", "spinal_cord": "spinal cord", "csf": "fluid (or csf)"}
_TRUE = {"1", "1.0", "true", "yes", "y", "t"}
_FALSE = {"0", "0.0", "false", "no", "n", "f"}


@dataclass
class VideoRecord:
    video_id: str
    frame_paths: list  # Paths in natural order
    labels: np.ndarray  # (N, 3) uint8 in LABELS order
    cord_mask_paths: list | None = None  # per frame Path or None; None when the video has no masks
    csf_mask_paths: list | None = None
    machine: str | None = None
    view: str | None = None
    extra: dict = field(default_factory=dict)
    split: str | None = None  # "train", "val" or "test" when the labels table says
    times_ms: np.ndarray | None = None  # (N,) frame times when the labels table has them

    @property
    def n_frames(self):
        return len(self.frame_paths)

    @property
    def has_masks(self):
        return self.cord_mask_paths is not None


def natural_key(name):
    """Sort key that puts frame2 before frame10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(name))]


def _norm(name):
    return re.sub(r"[\s_\-\.]+", "", name.strip().lower())


def _roles(header, table):
    roles = {}
    for i, name in enumerate(header):
        key = _norm(name)
        role = _COLUMN_ROLES.get(key)
        if role is None and key.endswith("cord"):
            role = "spinal_cord"
        if role is None and key.endswith("fluid"):
            role = "csf"
        if role and role not in roles:
            roles[role] = i
    for role in ("frame",) + ULTRASOUND_LABELS:
        if role not in roles:
            raise InputError(
                f"{table}: no {_SEEDS_NAMES.get(role, 'frame file')} column "
                f"(columns found: {', '.join(h.strip() for h in header) or 'none'})"
            )
    return roles


def _flag(value, table, line, column):
    v = str(value).strip().lower()
    if v in _TRUE:
        return 1
    if v in _FALSE:
        return 0
    raise InputError(f"{table} line {line}: {column} must be 0 or 1, got {value!r}")


def _read_table(path):
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            sample = fh.read(4096)
            fh.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
            except csv.Error:
                dialect = csv.excel
            rows = list(csv.reader(fh, dialect))
    except OSError as error:
        raise InputError(f"{path}: cannot read this labels table ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text (CSV) labels table") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"{path}: the labels table is empty")
    return rows[0], rows[1:]


def _find_table(root):
    for name in ("labels.csv", "labels.tsv", "labels.txt"):
        if (root / name).is_file():
            return root / name
    tables = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in (".csv", ".tsv") and p.name.lower() != "machines.csv")
    if len(tables) == 1:
        return tables[0]
    if len(tables) > 1:
        raise InputError(f"{root}: several tables ({', '.join(p.name for p in tables)}); name the labels table labels.csv")
    return None


def load_seed_layout(root):
    """Read a dataset folder in the seeds' layout -> list of VideoRecord (sorted by video id)."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: no such dataset folder")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder (a dataset is a folder of video folders plus labels.csv)")
    table = _find_table(root)
    per_video = {}
    if table is not None:
        _collect(root, table, per_video, video=None)
    else:
        subs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name))
        found = False
        for sub in subs:
            t = _find_table(sub)
            if t is not None:
                found = True
                _collect(sub, t, per_video, video=sub.name)
        if not found:
            raise InputError(f"{root}: no labels table (labels.csv with frame file, bad quality, spinal cord, fluid columns)")
    machines = _read_machines(root)
    records = []
    for vid in sorted(per_video, key=natural_key):
        entries = sorted(per_video[vid], key=lambda e: natural_key(e[0].name))
        frames = [e[0] for e in entries]
        labels = np.array([e[1] for e in entries], dtype=np.uint8).reshape(-1, 3)
        cord, csf = _mask_paths(frames)
        machine, view = machines.get(vid, (None, None))
        splits = {e[2] for e in entries}
        if len(splits) > 1:
            raise InputError(f"video {vid}: its frames are in several splits ({', '.join(sorted(map(str, splits)))}); split by video")
        times = [e[3] for e in entries]
        times = np.array(times, np.float64) if all(t is not None for t in times) else None
        records.append(VideoRecord(vid, frames, labels, cord, csf, machine, view, split=splits.pop(), times_ms=times))
    return records


def splits_from_records(records):
    """{'train', 'val', 'test': [video ids]} from the table's split column; None when it has none.
    ``records``: VideoRecords or Videos (anything with ``video_id`` and ``split``).

    Every video must then have a split (a table split for some videos only is refused)."""
    named = [r for r in records if r.split]
    if not named:
        return None
    missing = [r.video_id for r in records if not r.split]
    if missing:
        raise InputError(f"the labels table gives a split for some videos only (none for {', '.join(missing[:3])})")
    out = {"train": [], "val": [], "test": []}
    for r in records:
        out[r.split].append(r.video_id)
    return out


def _collect(base, table, per_video, video):
    header, rows = _read_table(table)
    roles = _roles(header, table.name)
    index = None  # file name -> paths under base (built only when needed)
    seen = set()
    for line, row in enumerate(rows, start=2):
        cell = lambda role: row[roles[role]].strip() if roles[role] < len(row) else ""  # noqa: E731
        name = cell("frame")
        if not name:
            raise InputError(f"{table.name} line {line}: empty frame file")
        labels = [_flag(cell(r), table.name, line, header[roles[r]].strip()) for r in ULTRASOUND_LABELS]
        split = _split_name(cell("split"), table.name, line) if "split" in roles else None
        time_ms = _time(cell("time_ms"), table.name, line) if "time_ms" in roles else None
        vid = video or (cell("video") if "video" in roles else "")
        rel = Path(name.replace("\\", "/"))
        if vid:
            candidates = [base / vid / rel, base / rel] if video is None else [base / rel]
            path = next((p for p in candidates if p.is_file()), None)
            if path is None:
                raise InputError(f"{table.name} line {line}: frame file {vid}/{rel} is listed but absent")
        else:
            if (base / rel).is_file() and len(rel.parts) > 1:
                path = base / rel
                vid = rel.parts[-2]
            else:
                if index is None:
                    index = {}
                    for p in base.rglob("*"):
                        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and "masks" not in p.parent.name.lower():
                            index.setdefault(p.name, []).append(p)
                hits = index.get(rel.name, [])
                if not hits:
                    raise InputError(f"{table.name} line {line}: frame file {rel} is listed but absent")
                if len(hits) > 1:
                    raise InputError(
                        f"{table.name} line {line}: frame file {rel.name} is in several folders "
                        f"({', '.join(str(h.parent.name) for h in hits[:3])}); add a video column"
                    )
                path = hits[0]
                vid = path.parent.name if path.parent != base else base.name
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(f"{table.name} line {line}: {path.name} is not a PNG/JPEG/BMP/TIFF frame")
        key = (vid, path.resolve())
        if key in seen:
            raise InputError(f"{table.name} line {line}: frame file {vid}/{path.name} is listed twice")
        seen.add(key)
        if labels[0] and (labels[1] or labels[2]):
            # the seeds' rule: a bad-quality frame shows neither cord nor fluid
            labels = [1, 0, 0]
        per_video.setdefault(vid, []).append((path, labels, split, time_ms))


def _split_name(value, table, line):
    if not value:
        return None
    name = _SPLIT_NAMES.get(value.strip().lower())
    if name is None:
        raise InputError(f"{table} line {line}: split must be train, validation or test, got {value!r}")
    return name


def _time(value, table, line):
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise InputError(f"{table} line {line}: time_ms must be a number, got {value!r}") from None


def _mask_paths(frames):
    cord, csf, any_mask = [], [], False
    for f in frames:
        mdir = f.parent / "masks"
        c = mdir / f"{f.stem}_cord.png"
        s = mdir / f"{f.stem}_csf.png"
        c = c if c.is_file() else None
        s = s if s.is_file() else None
        any_mask |= c is not None or s is not None
        cord.append(c)
        csf.append(s)
    return (cord, csf) if any_mask else (None, None)


def _read_machines(root):
    path = root / "machines.csv"
    if not path.is_file():
        return {}
    header, rows = _read_table(path)
    keys = [_norm(h) for h in header]
    if "video" not in keys or "machine" not in keys:
        raise InputError(f"{path.name}: needs video and machine columns (found {', '.join(header)})")
    iv, im = keys.index("video"), keys.index("machine")
    iw = keys.index("view") if "view" in keys else None
    out = {}
    for row in rows:
        if len(row) > max(iv, im):
            out[row[iv].strip()] = (row[im].strip() or None, row[iw].strip() if iw is not None and iw < len(row) else None)
    return out


# ============================================================================ the videos the classifier trains on


@dataclass
class Video:
    name: str
    frames: np.ndarray  # (N, H, W) or (N, H, W, 3) uint8
    labels: np.ndarray  # (N, 3) uint8
    times_ms: np.ndarray  # (N,)
    machine: str = ""
    kind: str = "spine"  # "spine" or "negative:<kind>"
    box: tuple = None
    extra: dict = field(default_factory=dict)
    split: str | None = None  # "train", "val" or "test" when the dataset's labels table says

    @property
    def n(self):
        return int(self.labels.shape[0])

    @property
    def video_id(self):
        return self.name


def generated_videos(n, machines, seed, frames_per_video, size=(224, 224), prefix="gen"):
    from SpineAITraining.ultrasound.generator import generate_cine

    videos = []
    for v in range(n):
        machine = machines[v % len(machines)]
        cine = generate_cine(seed * 100003 + v, machine=machine, n_frames=frames_per_video, size=size)
        videos.append(Video(f"{prefix}{v:04d}", cine.frames, cine.labels.astype(np.uint8), cine.frame_times_ms, machine, "spine",
                            extra={"view": cine.view}))
    return videos


def negative_videos(n, seed, frames=24, size=(224, 224)):
    from SpineAITraining.ultrasound.negatives import negative_cine

    videos = []
    for v in range(n):
        frames_, labels, kind = negative_cine(seed * 7919 + v, n_frames=frames, size=size)
        videos.append(Video(f"neg{v:04d}", frames_, labels, np.arange(frames) * (1000.0 / 25.0), "synthetic", f"negative:{kind}"))
    return videos


def layout_videos(root):
    """Videos of a seeds' layout folder (``load_seed_layout``), frames read."""
    return [_video_from_record(r) for r in load_seed_layout(root)]


def _video_from_record(record):
    """A VideoRecord -> Video (frames read here; 30 frames/s when the table gives no times)."""
    import cv2

    frames = np.stack([_read_rgb_or_grey(cv2, p) for p in record.frame_paths])
    times = record.times_ms if record.times_ms is not None else np.arange(len(record.labels)) * (1000.0 / 30.0)
    return Video(str(record.video_id), frames, np.asarray(record.labels, dtype=np.uint8), np.asarray(times, dtype=np.float64),
                 str(record.machine or ""), split=record.split)


def given_split(videos):
    """{'train', 'val', 'test'}: lists of videos, from the labels table's split column; None without one."""
    ids = splits_from_records(videos)
    if ids is None:
        return None
    by_id = {v.video_id: v for v in videos}
    parts = {k: [by_id[i] for i in ids[k]] for k in ("train", "val", "test")}
    empty = [name for name, k in (("train", "train"), ("validation", "val"), ("test", "test")) if not parts[k]]
    if empty:
        raise InputError(f"the dataset's split has no {' and no '.join(empty)} videos; export more cases or choose "
                         "--split fractions that give each part a case")
    return parts


def _read_rgb_or_grey(cv2, path):
    image = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{path}: cannot decode image")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB if image.shape[2] == 3 else cv2.COLOR_BGRA2RGB)
        if np.abs(image.astype(np.int16) - image[..., :1]).max() <= 8:
            image = image[..., 0]
    return image


def split_videos(videos, fractions, seed):
    """{'train', 'val', 'test'}: lists of videos, by video, stratified by machine."""
    rng = np.random.default_rng([seed, 31337])
    parts = {"train": [], "val": [], "test": []}
    by_machine = {}
    for v in videos:
        by_machine.setdefault(v.machine, []).append(v)
    for machine in sorted(by_machine):
        group = [by_machine[machine][i] for i in rng.permutation(len(by_machine[machine]))]
        n = len(group)
        n_test = max(1, round(fractions[2] * n)) if n >= 3 else 0
        n_val = max(1, round(fractions[1] * n)) if n >= 3 else 0
        parts["test"] += group[:n_test]
        parts["val"] += group[n_test : n_test + n_val]
        parts["train"] += group[n_test + n_val :]
    if not parts["val"] or not parts["test"]:  # too few videos per machine: split the pool instead
        pool = [videos[i] for i in rng.permutation(len(videos))]
        n_test = max(1, round(fractions[2] * len(pool)))
        n_val = max(1, round(fractions[1] * len(pool)))
        parts = {"test": pool[:n_test], "val": pool[n_test : n_test + n_val], "train": pool[n_test + n_val :]}
    return parts


def split_frames(videos, fractions, seed):
    """The leaky split: every frame of every video shuffled into train/val/test.

    Returns the same structure as split_videos, each part a list of one-video
    'Video' objects holding the chosen frames of each source video (so smoothing
    across a part still runs over the frames it has, in time order)."""
    rng = np.random.default_rng([seed, 4711])
    parts = {"train": [], "val": [], "test": []}
    for v in videos:
        which = rng.choice(3, size=v.n, p=fractions)
        for index, part in enumerate(("train", "val", "test")):
            keep = np.nonzero(which == index)[0]
            if keep.size:
                parts[part].append(Video(f"{v.name}[{part}]", v.frames[keep], v.labels[keep], v.times_ms[keep], v.machine, v.kind, v.box))
    return parts
