"""S1 (sacrum) labels for the real lumbar MRI, made by rule from each case's own L5 label and image.

    python -m SpineAITraining.lumbar.sacrum_labels --data ../shared/data/mri_lumbar \
        [--out SpineAITraining/labels/mri_lumbar_s1] [--review /tmp/s1_review] [--cases vb3_01,...]

The source datasets label L1-L5 (vb3) or T11-L5 (vb2); nothing labels the sacrum. The
first sacral segment's body is found below L5, in the case's own geometry:

1. **L5's axis**: the least-spread principal axis of L5 in the sagittal plane (perpendicular to its
   endplates), pointed away from L4;
2. **S1's superior endplate**: along lines parallel to that axis, spread across L5's
   anterior-posterior depth, the first run of ``RUN_MM`` of bone (smoothed intensity within L5's own
   5th-95th percentile range, widened by ``lo``/``hi``) after the line leaves L5 and crosses the
   L5/S1 disc (at most ``max_disc`` mm); a straight line fitted through those points (outliers
   dropped) is the endplate, its tilt the lumbosacral angle;
3. **S1's body**: a box standing on that endplate, as wide as the endplate points found, ``height`` x
   L5's own height deep, as wide left-right as L5; inside it, the voxels in L5's intensity range away
   from the labelled bodies, opened by 1 mm, the piece nearest the box's centre, closed by 2 mm.

Every label was then looked at as pictures (``--review``: three sagittal slices per case with L5
in red and S1 in green) and the parameters changed for the cases listed in ``overrides.json`` with the
reason. The output is one small uint8 NIfTI per case (1 = S1, on the case's own grid) and
``provenance.json``: how each was made, its parameters and measurements. Label maps only; never
the images.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

LABELS_DIR = Path(__file__).resolve().parents[1] / "labels" / "mri_lumbar_s1"
L4, L5 = 23, 24
S1 = 26  # VerSe
RUN_MM = 4  # bone along this many mm in a row is the body below the disc, not a speck in it
DEFAULTS = {"lo": 0.8, "hi": 1.2, "height": 0.85, "max_disc": 22.0}
MIN_ENDPLATE_POINTS = 5


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m SpineAITraining.lumbar.sacrum_labels", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the mri_lumbar folder")
    p.add_argument("--out", type=Path, default=LABELS_DIR)
    p.add_argument("--cases", help="comma-separated case ids (default: all)")
    p.add_argument("--review", type=Path, help="write review pictures (PNG) here")
    return p.parse_args(argv)


def label_path(case_id, folder=LABELS_DIR):
    """Where case ``case_id``'s S1 label lives (it may not exist)."""
    return Path(folder) / f"{case_id}_S1.nii.gz"


def with_s1(case_id, labels, folder=LABELS_DIR):
    """(voxels, has_s1): ``labels`` (a case's label map, VolumeImage) with the team's S1 label merged in as VerSe 26
    where nothing else is labelled, or its voxels unchanged when the case has none. The one place evaluation, the
    stress test and the tests read the S1 truth; a label on another grid stops the script."""
    from SpineAILib.io import load

    voxels = np.asarray(labels.voxels).copy()
    path = label_path(case_id, folder)
    if not path.is_file():
        return voxels, False
    s1 = load(path)
    if s1.voxels.shape != voxels.shape or not np.allclose(s1.ijk_to_ras, labels.ijk_to_ras, atol=1e-3):
        raise SystemExit(f"{path} is not on the grid of the labels of {case_id}")
    voxels[(np.asarray(s1.voxels) > 0) & (voxels == 0)] = S1
    return voxels, True


def _box_mean(volume, size=3):
    import torch

    t = torch.from_numpy(np.ascontiguousarray(volume, np.float32))[None, None]
    return torch.nn.functional.avg_pool3d(t, size, 1, size // 2, count_include_pad=False)[0, 0].numpy()


def sacrum_by_rule(image, labels, params=None):
    """(S1 mask or None, facts) for one case on its 1 mm grid (axes: superior->inferior, anterior->posterior, lateral)."""
    from SpineAILib.morphology import connected_components, dilation, opening

    p = {**DEFAULTS, **(params or {})}
    l5 = labels == L5
    if not l5.any() or not (labels == L4).any():
        return None, {"reason": "L4 or L5 not labelled"}
    points = np.argwhere(l5).astype(float)
    c5, c4 = points.mean(axis=0), np.argwhere(labels == L4).mean(axis=0)
    chain = (c5 - c4)[:2] / np.linalg.norm((c5 - c4)[:2])
    _, vectors = np.linalg.eigh(np.cov((points[:, :2] - c5[:2]).T))
    axis2 = vectors[:, 0] if vectors[:, 0] @ chain >= 0 else -vectors[:, 0]
    if axis2 @ chain < np.cos(np.radians(35)):  # L5's own axis that far off the column is its shape, not its tilt
        axis2 = chain
    axis = np.array([axis2[0], axis2[1], 0.0])
    across = np.array([-axis[1], axis[0], 0.0])
    across = across if across[1] >= 0 else -across  # points posterior
    lo, hi = np.percentile(image[l5], [5, 95])
    lo, hi = lo * p["lo"], hi * p["hi"]
    smooth = _box_mean(image, 3)
    shape = np.array(image.shape)

    def sample(q, volume):
        q = np.rint(q).astype(int)
        return volume[tuple(q)] if np.all(q >= 0) and np.all(q < shape) else None

    offsets = (points - c5) @ across
    t = np.arange(0.0, 60.0, 0.5)
    ends = []
    for u in np.arange(np.percentile(offsets, 5), np.percentile(offsets, 95), 1.0):
        base = c5 + u * across
        in_l5 = np.array([bool(sample(base + s * axis, l5)) for s in t])
        outside = np.nonzero(~in_l5)[0]
        if not len(outside):
            continue
        for s in np.arange(t[outside[0]] + 2.0, t[outside[0]] + p["max_disc"], 0.5):
            values = [sample(base + (s + k) * axis, smooth) for k in range(RUN_MM)]
            if any(v is None for v in values):
                break
            if all(lo <= v <= hi for v in values):
                ends.append((u, s))
                break
    if len(ends) < MIN_ENDPLATE_POINTS:
        return None, {"reason": f"S1's endplate not found below L5 ({len(ends)} points)"}
    ends = np.array(ends)
    slope, intercept = np.polyfit(ends[:, 0], ends[:, 1], 1)
    residual = ends[:, 1] - (intercept + slope * ends[:, 0])
    keep = np.abs(residual) <= max(2.0, 2.5 * np.median(np.abs(residual)))
    slope, intercept = np.polyfit(ends[keep, 0], ends[keep, 1], 1)
    u0, u1 = ends[keep, 0].min(), ends[keep, 0].max()
    p0 = c5 + u0 * across + (intercept + slope * u0) * axis
    p1 = c5 + u1 * across + (intercept + slope * u1) * axis
    along = p1 - p0
    width = float(np.linalg.norm(along))
    along /= width
    down = np.array([along[1], -along[0], 0.0])
    down = down if down @ axis >= 0 else -down
    height = p["height"] * float(np.ptp((points - c5) @ axis))
    grid = np.indices(image.shape).reshape(3, -1).T.astype(np.float32) - p0
    x, y = grid @ along, grid @ down
    lateral = np.percentile(points[:, 2], [1, 99])
    z = grid[:, 2] + p0[2]
    box = ((x >= -1) & (x <= width + 1) & (y >= -1.5) & (y <= height)
           & (z >= lateral[0] - 2) & (z <= lateral[1] + 2)).reshape(image.shape)  # fmt: skip
    candidate = box & (image >= lo) & (image <= hi) & ~dilation(labels > 0, 1, (1, 1, 1))
    components, _ = connected_components(opening(candidate, 1, (1, 1, 1)))
    found = np.argwhere(components > 0)
    if not len(found):
        return None, {"reason": "no bone in the box below the S1 endplate"}
    centre = (p0 + p1) / 2 + down * height / 2
    nearest = found[np.argmin(((found - centre) ** 2).sum(axis=1))]
    mask = components == components[tuple(nearest)]
    mask = ~dilation(~dilation(mask, 2, (1, 1, 1)), 2, (1, 1, 1)) & box  # closing
    facts = {"volume_ml": round(float(mask.sum()) / 1000, 1), "lumbosacral_tilt_deg": round(float(np.degrees(np.arctan(slope))), 1),
             "endplate_mm": round(width, 1), "height_mm": round(height, 1), "endplate_points": int(keep.sum())}  # fmt: skip
    return mask, facts


def review_picture(image, labels, mask, path):
    """Three sagittal slices through L5 (its middle and +-8 mm): L5 outlined red, S1 green."""
    from PIL import Image

    z = int(np.argwhere(labels == L5)[:, 2].mean())
    tiles = []
    for k in (z - 8, z, z + 8):
        k = int(np.clip(k, 0, image.shape[2] - 1))
        plane = image[:, :, k].astype(float)
        grey = (255 * (plane - plane.min()) / (np.ptp(plane) or 1)).astype(np.uint8)
        rgb = np.stack([grey] * 3, axis=-1)
        for region, colour in ((labels[:, :, k] == L5, (255, 0, 0)), (mask[:, :, k] > 0, (0, 255, 0))):
            edge = region & ~(np.roll(region, 1, 0) & np.roll(region, -1, 0) & np.roll(region, 1, 1) & np.roll(region, -1, 1))
            rgb[edge] = colour
        tiles.append(rgb)
    Image.fromarray(np.concatenate(tiles, axis=1)).resize((sum(t.shape[1] for t in tiles) * 2, tiles[0].shape[0] * 2)).save(path)


def main(argv=None):
    import nibabel as nib

    from SpineAITraining.lumbar.mri_lumbar import list_cases, require_cases

    args = parse_args(sys.argv[1:] if argv is None else argv)
    overrides_file = LABELS_DIR / "overrides.json"
    overrides = json.loads(overrides_file.read_text()) if overrides_file.is_file() else {}
    cases = require_cases(list_cases(args.data), args.data)
    if args.cases:
        wanted = set(args.cases.split(","))
        cases = [c for c in cases if c.case_id in wanted]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.review:
        args.review.mkdir(parents=True, exist_ok=True)
    provenance_file = args.out / "provenance.json"
    provenance = json.loads(provenance_file.read_text()) if provenance_file.is_file() else {"cases": {}}
    provenance["method"] = ("rule: SpineAITraining/lumbar/sacrum_labels.py (S1 body below the L5/S1 disc, from each case's "
                            "own L5 label and intensities), reviewed as pictures; cases in overrides.json re-made with "
                            "other parameters after review")  # fmt: skip
    provenance["label"] = {"value": 1, "meaning": f"S1 vertebral body (VerSe {S1})"}
    for case in cases:
        source = nib.load(str(case.image))
        image = np.asarray(source.dataobj, dtype=np.float32)
        labels = np.rint(np.asarray(nib.load(str(case.labels)).dataobj)).astype(np.int16)
        override = overrides.get(case.case_id, {})
        params = {k: v for k, v in override.items() if k in DEFAULTS}
        mask, facts = sacrum_by_rule(image, labels, params)
        entry = {"made_by": "rule" + (" with case parameters after review" if params else ""),
                 "parameters": {**DEFAULTS, **params}, **facts}  # fmt: skip
        if override.get("why"):
            entry["review"] = override["why"]
        if mask is not None:
            out = nib.Nifti1Image(mask.astype(np.uint8), source.affine)
            out.header.set_data_dtype(np.uint8)
            nib.save(out, str(label_path(case.case_id, args.out)))
            if args.review:
                review_picture(image, labels, mask, args.review / f"{case.case_id}.png")
        provenance["cases"][case.case_id] = entry
        print(case.case_id, json.dumps(facts), flush=True)
    provenance["cases"] = dict(sorted(provenance["cases"].items()))
    provenance_file.write_text(json.dumps(provenance, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    from SpineAILib.errors import run_reporting_errors

    sys.exit(run_reporting_errors("sacrum_labels", main))
