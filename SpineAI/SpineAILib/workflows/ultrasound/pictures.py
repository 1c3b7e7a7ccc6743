"""A run's pictures: the timeline of per-frame probabilities and calls, and the best-frame overlays."""

import numpy as np

from SpineAILib.vocabulary import ULTRASOUND_LABELS as LABELS
from SpineAILib.workflows.ultrasound.heatmaps import square_to_grid

OVERLAY_MAX_SIDE = 640


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_timeline(times_ms, probs, calls, thresholds, path, best=(), title="", truth=None, labels=LABELS, axes_out=None):
    """Per-frame (smoothed) probabilities over time, thresholds dashed, calls as bands below.

    ``axes_out`` (a dict) receives where the time axis lies in the picture: 'x_fraction'
    [left, right] of the image width and 'time_s' [first, last] at those edges, so a viewer
    can draw the current frame on it and turn a click into a time."""
    plt = _pyplot()
    colours = {"bad_quality": "#d62728", "spinal_cord": "#2ca02c", "csf": "#1f77b4"}  # cord green, CSF blue everywhere
    t = np.asarray(times_ms, dtype=float) / 1000.0
    fig, (ax, bands) = plt.subplots(2, 1, figsize=(9, 4.2), sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    for j, label in enumerate(labels):
        colour = colours.get(label)
        ax.plot(t, probs[:, j], "-" if len(t) > 1 else "o", color=colour, label=f"p({label})", lw=1.5)
        ax.axhline(float(thresholds.get(label, 0.5)), color=colour, ls="--", lw=0.8, alpha=0.7)
        rows = [(calls[:, j], 2 - j + 0.55, 0.85)]
        if truth is not None:
            rows.append((np.asarray(truth)[:, j], 2 - j + 0.15, 0.3))
        step = float(np.median(np.diff(t))) if len(t) > 1 else 0.05
        for values, y, alpha in rows:
            spans = [(t[i] - step / 2, step) for i in np.nonzero(values)[0]]
            bands.broken_barh(spans, (y, 0.32), color=colour, alpha=alpha, lw=0)
    for i in best:
        ax.axvline(t[i], color="k", lw=0.8, ls=":")
        ax.text(t[i], 1.0, f" best {i}", fontsize=7, ha="left", va="bottom")
    ax.set_ylim(-0.02, 1.08)
    ax.set_ylabel("probability")
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=7, ncol=3, frameon=False)
    ax.set_title(title, fontsize=9, loc="left")
    bands.set_yticks([2.6, 1.6, 0.6], [f"{x}" for x in labels], fontsize=7)
    bands.set_ylim(0, 3.1)
    bands.set_xlabel("time (s)" + ("  (bands: calls; pale: truth)" if truth is not None else "  (bands: calls)"))
    if len(t) == 1:
        ax.set_xlim(t[0] - 0.5, t[0] + 0.5)
    fig.tight_layout()
    if axes_out is not None:
        box = bands.get_position()  # shares the x axis with the probabilities
        axes_out.update({"x_fraction": [round(float(box.x0), 5), round(float(box.x1), 5)],
                         "time_s": [round(float(v), 6) for v in bands.get_xlim()]})
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_overlay(frame, index, time_ms, probs, calls, labels, path, extra=None, thresholds=None):
    """The frame (upscaled to at least 480 px wide) with the three calls written above it;
    ``extra``: {'heat': {label: (H, W) 0..1}, 'masks': {label: (H, W) bool}} drawn when present."""
    import cv2

    from SpineAILib.render import save_png

    rgb = frame if frame.ndim == 3 else np.repeat(frame[..., None], 3, axis=2)
    rgb = np.ascontiguousarray(rgb)
    panels = [rgb]
    captions = ["frame"]
    if extra and extra.get("masks"):
        shown = rgb.copy()
        for label, colour in (("csf", (70, 140, 255)), ("spinal_cord", (60, 220, 60))):
            mask = extra["masks"].get(label)
            if mask is not None and mask.any():
                mask = cv2.resize(mask.astype(np.uint8), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
                shown[mask] = (0.55 * shown[mask] + 0.45 * np.array(colour)).astype(np.uint8)
                contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                cv2.drawContours(shown, contours, -1, colour, 1)
        panels.append(shown)
        captions.append("masks: cord green, CSF blue")
    if extra and extra.get("heat"):
        from SpineAILib.colourmaps import overlay_heatmap

        for label, heat in extra["heat"].items():
            panels.append(overlay_heatmap(rgb, heat, alpha=0.45, min_heat=0.05))
            captions.append(f"Grad-CAM {label}")
    scale = max(1.0, 480.0 / rgb.shape[1])
    scale = min(scale, OVERLAY_MAX_SIDE / max(rgb.shape[:2])) if max(rgb.shape[:2]) * scale > OVERLAY_MAX_SIDE else scale
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    panels = [cv2.resize(p, size, interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA) for p in panels]
    for p, caption in zip(panels[1:], captions[1:]):
        cv2.putText(p, caption, (6, p.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    body = np.hstack(panels)
    banner = np.zeros((58, body.shape[1], 3), np.uint8)
    cv2.putText(banner, f"frame {index}   t = {time_ms:.0f} ms", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (230, 230, 230), 1, cv2.LINE_AA)
    x = 8
    for j, label in enumerate(labels):
        yes = bool(calls[j])
        if label == "bad_quality":
            text, colour = ("BAD QUALITY" if yes else "quality OK"), ((255, 80, 80) if yes else (150, 220, 150))
        else:
            name = "cord" if label == "spinal_cord" else "CSF"
            text, colour = f"{name}: {'YES' if yes else 'no'}", ((90, 255, 90) if yes else (170, 170, 170))
        text += f" ({probs[j]:.2f})"
        cv2.putText(banner, text, (x, 46), cv2.FONT_HERSHEY_SIMPLEX, 0.55, colour, 1 + yes, cv2.LINE_AA)
        x += int(cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.55, 2)[0][0]) + 22
    save_png(np.vstack([banner, body]), path)
    return path


def frame_explanations(cine, box, pre, shown, heat, localisation=None):
    """{frame index: {'heat': {label: map on the frame}, 'masks': ...}} for the best-frame pictures,
    from the kept Grad-CAM maps and the localisation result when there are any."""
    extras = {}
    for index, squares in ((heat or {}).get("kept") or {}).items():
        shape = cine.frames[index].shape[:2]
        extras.setdefault(index, {})["heat"] = {
            label: square_to_grid(np.asarray(square, dtype=np.float32), shape, box, pre, shape) for label, square in squares.items()
        }
    if localisation is not None:
        for index in shown:
            extras.setdefault(index, {})["masks"] = {
                "spinal_cord": localisation["cord_masks"][index],
                "csf": localisation["csf_masks"][index],
            }
    return extras
