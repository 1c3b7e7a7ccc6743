"""The seeds' LP-ultrasound dataset layout -> per-video records, splits and a frame Dataset.

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
both sides of a split inflates the score. ``split_by_frame`` does it the leaky way
only so a report can show users how much.
"""

import csv
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from SpineAILib.errors import InputError

from .generator import LABELS

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
_LABEL_ROLES = ("bad_quality", "spinal_cord", "csf")
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
    for role in ("frame",) + _LABEL_ROLES:
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
        labels = [_flag(cell(r), table.name, line, header[roles[r]].strip()) for r in _LABEL_ROLES]
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


# ============================================================================ splits


def _check_fractions(fractions):
    f = [float(x) for x in fractions]
    if len(f) != 3 or any(x < 0 for x in f) or not 0.999 <= sum(f) <= 1.001:
        raise InputError(f"split fractions must be three non-negative numbers adding up to 1, got {tuple(fractions)}")
    return f


def _stratum(record):
    lab = record.labels
    mean = lab.mean(axis=0) if len(lab) else np.zeros(3)
    # machine, and whether the video shows cord at all (the rare, clinically key label)
    return (record.machine or "", int(mean[1] > 0.05), int(mean[2] > 0.5))


def split_by_video(records, fractions=(0.7, 0.15, 0.15), seed=0, stratify=True):
    """Assign whole videos to train/val/test -> dict(train=[ids], val=[ids], test=[ids]).

    Videos are shuffled (within strata of machine and label profile when ``stratify``)
    and each goes to the split furthest below its target share of frames, so frame
    fractions come close to ``fractions`` and every split with a non-zero fraction
    gets a video when there are enough videos.
    """
    f = _check_fractions(fractions)
    records = list(records)
    if not records:
        raise InputError("no videos to split")
    ids = [r.video_id for r in records]
    if len(set(ids)) != len(ids):
        raise InputError("video ids must be unique to split by video")
    rng = random.Random(seed)
    if stratify:
        strata = {}
        for r in records:
            strata.setdefault(_stratum(r), []).append(r)
        order = []
        for key in sorted(strata):
            group = strata[key]
            rng.shuffle(group)
            order.extend(group)
    else:
        order = records[:]
        rng.shuffle(order)
    names = ("train", "val", "test")
    out = {n: [] for n in names}
    counts = dict.fromkeys(names, 0)
    total = sum(r.n_frames for r in records) or 1
    wanted = [n for n, x in zip(names, f) if x > 0]
    # make sure each wanted split gets one video first (largest shares last so small ones are served)
    for i, r in enumerate(order):
        empty = [n for n in wanted if not out[n]]
        remaining = len(order) - i
        if empty and remaining <= len(empty):
            name = empty[0]
        else:
            deficits = {n: f[names.index(n)] - counts[n] / total for n in wanted}
            name = max(wanted, key=lambda n: (deficits[n], -names.index(n)))
        out[name].append(r.video_id)
        counts[name] += r.n_frames
    return out


def split_by_frame(records, fractions=(0.7, 0.15, 0.15), seed=0, stratify=True):
    """The leaky split: frames shuffled regardless of video -> dict of [(video_id, frame_index)].

    Only for the report that shows users how much a frame-level split inflates scores.
    """
    f = _check_fractions(fractions)
    items = [(r.video_id, i, tuple(int(x) for x in r.labels[i])) for r in records for i in range(r.n_frames)]
    if not items:
        raise InputError("no frames to split")
    rng = random.Random(seed)
    groups = {}
    for it in items:
        groups.setdefault(it[2] if stratify else (), []).append(it[:2])
    out = {"train": [], "val": [], "test": []}
    for key in sorted(groups):
        g = groups[key]
        rng.shuffle(g)
        n = len(g)
        a = int(round(f[0] * n))
        b = a + int(round(f[1] * n))
        out["train"] += g[:a]
        out["val"] += g[a:b]
        out["test"] += g[b:]
    for k in out:
        rng.shuffle(out[k])
    return out


def hold_out_machine(records, machine, val_fraction=0.15, seed=0):
    """Generalisation split: every video of ``machine`` is the test set; the other machines'
    videos are split by video into train and val -> dict(train=[ids], val=[ids], test=[ids])."""
    records = list(records)
    known = sorted({r.machine for r in records if r.machine})
    if not known:
        raise InputError("the videos carry no machine names (machines.csv); cannot hold a machine out")
    if machine not in known:
        raise InputError(f"no videos from machine {machine!r}; machines present: {', '.join(known)}")
    test = [r.video_id for r in records if r.machine == machine]
    rest = [r for r in records if r.machine != machine]
    if not rest:
        raise InputError(f"all videos come from {machine!r}; nothing left to train on")
    if len(rest) == 1 or val_fraction <= 0:
        return {"train": [r.video_id for r in rest], "val": [], "test": test}
    inner = split_by_video(rest, (1.0 - val_fraction, val_fraction, 0.0), seed=seed)
    return {"train": inner["train"], "val": inner["val"], "test": test}


# ============================================================================ frames for training


class FrameDataset:
    """Map-style dataset of frames (works with ``torch.utils.data.DataLoader``).

    ``ids``: video ids (every frame of those videos) and/or (video_id, frame_index)
    pairs (what ``split_by_frame`` returns). Item: ``(image, labels)`` with image uint8
    (H, W) grey or (H, W, 3) RGB as stored and labels float32[3] in LABELS order; with
    ``masks=True``: ``(image, labels, masks)`` where masks is uint8 (2, H, W) [cord, csf]
    (zeros where a video has no mask files). ``transform(image)`` (or
    ``transform(image, masks)`` returning both, when ``masks=True``) is applied last.
    ``grey=True`` turns colour frames into luminance.
    """

    def __init__(self, records, ids, transform=None, masks=False, grey=False):
        self.records = {r.video_id: r for r in records}
        self.items = []
        for key in ids:
            if isinstance(key, (tuple, list)):
                vid, i = key[0], int(key[1])
                if vid not in self.records or not 0 <= i < self.records[vid].n_frames:
                    raise InputError(f"frame {vid}#{i} is not in the dataset")
                self.items.append((vid, i))
            else:
                if key not in self.records:
                    raise InputError(f"video {key!r} is not in the dataset")
                self.items.extend((key, i) for i in range(self.records[key].n_frames))
        self.transform = transform
        self.masks = masks
        self.grey = grey

    def __len__(self):
        return len(self.items)

    def labels(self):
        """(len, 3) float32 labels of every item (for class weights and samplers)."""
        if not self.items:
            return np.zeros((0, 3), np.float32)
        return np.stack([self.records[v].labels[i] for v, i in self.items]).astype(np.float32)

    def __getitem__(self, index):
        vid, i = self.items[index]
        rec = self.records[vid]
        image = read_frame(rec.frame_paths[i], grey=self.grey)
        labels = rec.labels[i].astype(np.float32)
        if not self.masks:
            return (self.transform(image) if self.transform else image), labels
        m = np.zeros((2,) + image.shape[:2], np.uint8)
        if rec.has_masks:
            for k, paths in enumerate((rec.cord_mask_paths, rec.csf_mask_paths)):
                if paths[i] is not None:
                    mk = read_frame(paths[i], grey=True)
                    if mk.shape != image.shape[:2]:
                        raise InputError(f"{paths[i]}: mask size {mk.shape[1]}x{mk.shape[0]} differs from its frame")
                    m[k] = mk > 0
        if self.transform:
            image, m = self.transform(image, m)
        return image, labels, m


def read_frame(path, grey=False):
    """One frame file -> uint8 (H, W) or (H, W, 3) RGB; grey-looking colour files stay colour."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    if data is None:
        raise InputError(f"{path}: frame file is absent")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(f"{path}: not a readable image")
    if image.dtype != np.uint8:
        image = (image / max(float(image.max()), 1.0) * 255.0).astype(np.uint8)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
        if grey:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return image


def label_frequencies(records):
    """{label: fraction of frames} over records, plus the frame count."""
    if not records:
        return {"frames": 0, **dict.fromkeys(LABELS, 0.0)}
    lab = np.concatenate([r.labels for r in records])
    return {"frames": int(len(lab)), **{name: float(lab[:, k].mean()) for k, name in enumerate(LABELS)}}
