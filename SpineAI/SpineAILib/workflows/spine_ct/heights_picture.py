"""A picture of the measured body heights: the mid-sagittal CT slice through the column, each vertebra's
outline, its anterior, middle and posterior height lines where they were measured, and its name with
the heights and the Genant grade (or why not) beside it. What a reader checks first: do the lines run
from endplate to endplate?

The lines are the measurement's own (``vertebral_bodies`` ``height_lines``, RAS), projected onto the
slice; the slice is the canonical sagittal plane (SpineAILib.ct_grid) at the vertebrae's median
left-right position, shown with square pixels.
"""

import numpy as np

from SpineAILib.ct_grid import Layout

WINDOW_HU = (-250.0, 1000.0)  # bone window, soft tissue still visible
MARGIN_MM = 15.0
MAX_SIDE_PX = 900
CAPTION_PX = 230  # a margin on the picture's left (the patient's front) for the captions
COLOURS = {"anterior": (60, 220, 60), "middle": (240, 220, 40), "posterior": (60, 200, 240)}  # RGB
OUTLINE = (220, 80, 80)


def heights_picture(image, labelmap, rows):
    """(H, W, 3) uint8 RGB, or None when no vertebra is labelled."""
    import cv2

    layout = Layout.of(image.voxels.shape, image.ijk_to_ras)
    labels = layout.view(labelmap.voxels)
    counts = np.bincount(np.asarray(labels).ravel(), minlength=256)  # one pass over the labels, not one per row
    named = [r for r in rows if 0 <= r["label"] < len(counts) and counts[r["label"]]]
    if not named:
        return None
    z_all, y_all, x_all = np.nonzero(np.isin(labels, [r["label"] for r in named]))
    x = int(np.median(x_all))
    spacing = layout.spacing
    pad = [int(round(MARGIN_MM / s)) for s in spacing[:2]]
    z0, z1 = max(0, z_all.min() - pad[0]), min(layout.shape[0], z_all.max() + 1 + pad[0])
    y0, y1 = max(0, y_all.min() - pad[1]), min(layout.shape[1], y_all.max() + 1 + pad[1])
    pixel_mm = max((z1 - z0) * spacing[0], (y1 - y0) * spacing[1]) / MAX_SIDE_PX
    hu = np.asarray(layout.view(image.voxels)[z0:z1, y0:y1, x], dtype=np.float32)
    size = (max(1, int(round((y1 - y0) * spacing[1] / pixel_mm))), max(1, int(round((z1 - z0) * spacing[0] / pixel_mm))))
    grey = np.clip((hu - WINDOW_HU[0]) / (WINDOW_HU[1] - WINDOW_HU[0]) * 255.0, 0, 255).astype(np.uint8)
    # the canonical axis 1 runs to the back: the picture shows the patient's front on the left, as a sagittal view does
    picture = cv2.cvtColor(cv2.resize(grey, size, interpolation=cv2.INTER_LINEAR), cv2.COLOR_GRAY2RGB)
    slab = labels[z0:z1, y0:y1, x]
    to_canonical = np.linalg.inv(layout.canonical_to_ras)

    def pixel(ras):
        k, j = (to_canonical @ np.append(np.asarray(ras, float), 1.0))[[2, 1]]
        return int(round((j - y0 + 0.5) * spacing[1] / pixel_mm)), int(round((k - z0 + 0.5) * spacing[0] / pixel_mm))

    for row in named:  # every outline first, the lines over them
        mask = cv2.resize((slab == row["label"]).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(picture, contours, -1, OUTLINE, 1)
    captions = []
    for row in named:
        for band, (inferior, superior) in (row.get("height_lines") or {}).items():
            cv2.line(picture, pixel(inferior), pixel(superior), COLOURS.get(band, (255, 255, 255)), 2)
        ks, js = np.nonzero(slab == row["label"])
        if not len(ks):
            continue
        anchor = (CAPTION_PX + int((js.min() + 0.5) * spacing[1] / pixel_mm) - 4, int((ks.mean() + 0.5) * spacing[0] / pixel_mm))
        captions.append((_caption(row), anchor))
    picture = np.pad(picture, ((0, 0), (CAPTION_PX, 0), (0, 0)))  # room for the captions in front of the bodies
    for text, anchor in captions:
        _label(picture, text, anchor)
    return picture


def _caption(row):
    if row.get("middle_height_mm") is None:
        return row["name"]
    heights = "/".join(f"{row[f'{band}_height_mm']:.0f}" for band in ("anterior", "middle", "posterior"))
    grade, span = row.get("genant_grade"), row.get("genant_grade_range")
    if grade is not None and row.get("genant_borderline") and span:
        grade = f"{span[0]}-{span[1]}"
    return f"{row['name']} {heights} mm" + ("" if grade is None else f", Genant {grade}")


def _label(picture, text, right_middle):
    """``text`` ending at ``right_middle`` (x, y), on a dark box so it reads over bone."""
    import cv2

    (width, height), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    x = max(0, right_middle[0] - width)
    y = min(picture.shape[0] - base, max(height, right_middle[1] + height // 2))
    cv2.rectangle(picture, (x, y - height - 1), (x + width, y + base), (0, 0, 0), -1)
    cv2.putText(picture, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)


def write_heights_picture(image, labelmap, rows, path):
    """The picture as PNG at ``path`` (atomically); False when there was nothing to draw."""
    from SpineAILib.render import save_png

    picture = heights_picture(image, labelmap, rows)
    if picture is None:
        return False
    save_png(picture, path)
    return True
