"""Infant lumbar-puncture ultrasound: per-frame bad_quality / spinal_cord / csf on a cine.

``run(job)`` (``spineai run lp-ultrasound INPUT --out DIR``):

1. screening: colour frames (colour Doppler, colour-mapped or photographs: more
   than 2 % strongly coloured pixels in the cropped content) and grey images that
   do not look like B-mode ultrasound (little black background, no speckle);
2. per-frame probabilities (SpineAILib.workflows.ultrasound.inference: ONNX Runtime on CPU, torch
   fallback), preprocessing as in training, a bounded number of frames at a time;
3. temporal smoothing over the cine (centred, ``inference.smoothing_window_ms`` of
   the bundle, by frame time), per-label thresholds from the bundle, and the rule
   that a bad-quality frame shows neither cord nor CSF;
4. best frames: good quality, CSF called, highest smoothed p_csf, >= 0.5 s apart.

Bad-input policy (also in the README):
* colour Doppler / colour-overlay frames: analysed in grey, but *called bad
  quality* (so never cord or CSF) with a warning naming how many frames; the
  model was not trained on flow colour, and a false CSF call is the costly error;
* a mostly colourful image (photograph, colour-mapped picture): same, and the
  warning says it does not look like ultrasound;
* a grey image without the black background every ultrasound export has (a
  photograph, a screenshot): a warning only; the model's own calls stand (it was
  trained with non-spine negatives, CT-like slices and photographs among them, as
  bad quality). A CT slice saved as PNG passes the check (it has a black
  background too) and is left to the model; CT DICOM is refused by its modality;
* a one-frame cine works (no smoothing); 3-D volumes, corrupt files and frames of
  differing sizes are refused by the readers before this runs.

Outputs: ``frames.tsv`` (frame, time_ms, p_bad_quality, p_spinal_cord, p_csf:
the smoothed probabilities the calls are made from; bad_quality, spinal_cord,
csf: the 0/1 calls) with its ``.schema.tsv``; ``timeline.png``; ``best_frame_K.png``
overlays (calls written on the frame; beside it the cord/CSF masks when a
localisation bundle is installed (SpineAILib.workflows.ultrasound.localise) and Grad-CAM heat maps
of cord and CSF (SpineAILib.explain); SPINEAI_MASKS=0 / SPINEAI_HEATMAPS=0 switch
them off: both need torch, a few seconds more); ``heatmap.seq.nrrd`` (per-frame
Grad-CAM of the called cord/CSF labels on a coarse grid covering each frame,
SpineAILib.workflows.ultrasound.heatmaps; a Slicer sequence with the cine's frame times, which the
viewers' "Heat map" toggle overlays); ``scene.mrb`` (the cine as a
sequence with a synchronised "calls" sequence, the per-frame mask and box
sequences when localised, the hidden heat-map sequence, and the table). Frames
over 1280 px (4K video) enter the scene downscaled.
"""

import time
from pathlib import Path

import numpy as np

from SpineAILib.workflows.ultrasound.inference import (
    LABELS,
    FrameClassifier,
    best_frames,
    decide,
    smooth_centred,
)
from SpineAILib.workflows.ultrasound.preprocess import (
    DOPPLER_FRACTION,
    PHOTO_FRACTION,
    colour_fraction,
    content_box,
    to_grey,
    ultrasound_likeness,
)
from SpineAILib.vocabulary import LP_ULTRASOUND
from SpineAILib.workflows.base import Workflow

OUTPUTS = {"table": "frames.tsv", "timeline": "timeline.png", "scene": "scene.mrb", "heatmap": "heatmap.seq.nrrd"}
COLUMNS = ("frame", "time_ms", "p_bad_quality", "p_spinal_cord", "p_csf", "bad_quality", "spinal_cord", "csf")
OVERLAY_MAX_SIDE = 640
CALLS_SEQUENCE_MAX_BYTES = 96 * 1024**2  # the per-frame "calls" sequence in scene.mrb is skipped above this
CALLS_SEQUENCE_MAX_SIDE = 320
LOCALISE_MAX_PIXELS = 120_000_000  # per-frame masks for cines up to this many pixels in all
SCENE_MAX_SIDE = 1280  # larger frames (4K video) enter scene.mrb downscaled
BATCH = 32


def run(job):
    cine = job.image
    out = Path(job.out_dir)
    t0 = time.perf_counter()
    job.progress(0.02, "loading the ultrasound classifier")
    classifier = FrameClassifier(job.bundle_path, device=job.device, expected_task="lp-ultrasound")
    if classifier.backend_note:
        job.warnings.append(classifier.backend_note)
    job.timings["model_load_s"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    box = content_box(cine.frames, threshold=classifier.preprocessor.content_threshold)
    screening = screen(cine, box)
    job.warnings.extend(screening["warnings"])
    job.timings["screening_s"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    job.progress(0.05, f"classifying {cine.n_frames} frames ({classifier.backend})")
    raw = classifier.cine_probabilities(
        cine.frames, BATCH, box, progress=lambda f: job.progress(0.05 + 0.6 * f, "classifying frames")
    )
    infer_s = time.perf_counter() - t0
    job.timings["inference_s"] = round(infer_s, 3)

    labels = classifier.labels
    times = np.asarray(cine.frame_times_ms, dtype=np.float64)
    window = classifier.window_ms if cine.n_frames > 1 else 0.0
    probs = smooth_centred(raw, times, window)
    calls = decide(probs, classifier.thresholds, labels, force_bad=screening["forced_bad"])
    best = best_frames(probs, calls, times, labels)

    shown = best or [_most_usable_frame(probs, labels)]
    heat = explain_cine(classifier, cine, box, calls, labels, shown, job)

    job.progress(0.75, "writing the table, timeline and overlays")
    t0 = time.perf_counter()
    results = summarise(cine, probs, calls, best, classifier, screening, window, infer_s)
    job.results.update(results)
    axes = {}
    plot_timeline(times, probs, calls, classifier.thresholds, out / OUTPUTS["timeline"], best=best,
                  title=f"{cine.description or Path(str(job.input_path)).name}: {cine.n_frames} frames", axes_out=axes)
    job.outputs["timeline"] = OUTPUTS["timeline"]
    job.results["timeline_axes"] = axes
    localisation = localise_cine(cine, calls, labels, job)
    extras = _explanations(cine, box, classifier.preprocessor, shown, heat, localisation)
    overlays = []
    for rank, index in enumerate(shown, start=1):
        name = f"best_frame_{rank}.png" if best else "most_usable_frame.png"
        write_overlay(cine.frames[index], index, times[index], probs[index], calls[index], labels, out / name,
                      extras.get(index), classifier.thresholds)
        overlays.append(name)
        job.outputs[f"overlay_{rank}" if best else "overlay"] = name
    job.results["overlays"] = overlays
    job.timings["figures_s"] = round(time.perf_counter() - t0, 3)

    job.progress(0.85, "building the scene")
    t0 = time.perf_counter()
    write_scene(job, cine, probs, calls, labels, localisation, heat["heats"] if heat else None)
    job.timings["scene_s"] = round(time.perf_counter() - t0, 3)


# ---------------------------------------------------------------------------- screening


def screen(cine, box):
    """{'forced_bad': (N,) bool, 'colour_frames', 'photo_like_frames', 'looks_like_ultrasound', 'warnings'}."""
    n = cine.n_frames
    forced = np.zeros(n, dtype=bool)
    warnings = []
    colour, photo = 0, 0
    fractions = []
    if cine.is_color:
        for i, frame in enumerate(cine.frames):
            f = colour_fraction(frame, box)
            fractions.append(f)
            if f > DOPPLER_FRACTION:
                forced[i] = True
                colour += 1
                photo += f > PHOTO_FRACTION
    picks = np.unique(np.linspace(0, n - 1, min(n, 8)).round().astype(int))
    traits = [ultrasound_likeness(to_grey(cine.frames[i])) for i in picks]
    looks = sum(t["looks_like_ultrasound"] for t in traits) >= max(1, len(traits) // 2)
    if photo:
        warnings.append(
            f"{photo} of {n} frames are mostly colour and do not look like ultrasound (a photograph or colour picture?); "
            "they are called bad_quality with no spinal cord or CSF"
        )
    if colour - photo:
        warnings.append(
            f"{colour - photo} of {n} frames carry colour Doppler or colour overlays; the classifier reads grey B-mode only, "
            "so these frames are called bad_quality with no spinal cord or CSF (export B-mode without colour flow)"
        )
    if not looks and not photo:
        warnings.append(
            "the input does not look like B-mode ultrasound (no black background, which every ultrasound export has): "
            "a photograph or a screenshot? the calls may be meaningless"
        )
    return {
        "forced_bad": forced,
        "colour_frames": int(colour),
        "photo_like_frames": int(photo),
        "max_colour_fraction": round(float(max(fractions)) if fractions else 0.0, 4),
        "looks_like_ultrasound": bool(looks),
        "traits": traits[0] if traits else {},
        "warnings": warnings,
    }


# ---------------------------------------------------------------------------- summary


def summarise(cine, probs, calls, best, classifier, screening, window, infer_s):
    labels = classifier.labels
    n = cine.n_frames
    times = cine.frame_times_ms
    counts = {label: int(calls[:, j].sum()) for j, label in enumerate(labels)}
    good = int(n - counts.get("bad_quality", 0))
    csf_j = labels.index("csf")
    if best:
        message = f"CSF visible in {counts['csf']} of {n} frames; best frame {best[0]} at {times[best[0]]:.0f} ms (p_csf {probs[best[0], csf_j]:.2f})"
    elif good == 0:
        message = f"no usable frame: all {n} frames are bad quality"
    else:
        message = f"no frame with CSF visible among {good} good-quality frames"
    return {
        "frames": n,
        "summary": message,
        "counts": counts,
        "fractions": {label: round(counts[label] / max(n, 1), 4) for label in labels},
        "good_quality_frames": good,
        "best_frames": [
            {
                "frame": int(i),
                "time_ms": round(float(times[i]), 3),
                **{f"p_{label}": round(float(probs[i, j]), 4) for j, label in enumerate(labels)},
            }
            for i in best
        ],
        "thresholds": {k: float(classifier.thresholds[k]) for k in labels},
        "smoothing_window_ms": float(window),
        "backend": classifier.backend,
        "frames_per_s": round(n / infer_s, 1) if infer_s > 0 else None,
        "screening": {k: v for k, v in screening.items() if k not in ("forced_bad", "warnings")},
    }


def _most_usable_frame(probs, labels):
    return int(np.argmin(probs[:, labels.index("bad_quality")]))


# ---------------------------------------------------------------------------- pictures


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
        from SpineAILib.explain import overlay_heatmap

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


def _switched_off(variable):
    import os

    return os.environ.get(variable, "1").strip().lower() in ("0", "no", "false", "off")


def explain_cine(classifier, cine, box, calls, labels, shown, job):
    """Per-frame Grad-CAM heat maps (SpineAILib.workflows.ultrasound.heatmaps: the review's "Heat map" overlay,
    written as heatmap.seq.nrrd) plus the per-label maps of the ``shown`` best frames; None when
    SPINEAI_HEATMAPS=0 or Grad-CAM is not possible here (no torch: a warning, the calls stand)."""
    if _switched_off("SPINEAI_HEATMAPS"):
        return None
    t0 = time.perf_counter()
    job.progress(0.68, "Grad-CAM heat maps")
    try:
        from SpineAILib.workflows.ultrasound import heatmaps as us_heatmaps

        heat = us_heatmaps.cine_heatmaps(
            classifier.torch_model, classifier.preprocessor, cine.frames, box, calls, labels, keep=shown,
            progress=lambda f: job.progress(0.68 + 0.07 * f, "Grad-CAM heat maps"),
        )
    except Exception as error:  # explanation is a bonus: report, keep the calls
        job.warnings.append(f"Grad-CAM heat maps skipped ({type(error).__name__}: {' '.join(str(error).split())[:120]})")
        return None
    job.warnings.extend(heat["warnings"])
    job.timings["heatmaps_s"] = round(time.perf_counter() - t0, 3)
    job.results["heatmaps"] = {
        "frames_explained": int(heat["explained"]),
        "every_nth_called_frame": int(heat["stride"]),
        "grid": list(heat["grid"]) if heat["grid"] else None,
        "content": "per frame: max of the spinal_cord and csf Grad-CAM maps of the labels called on it; 0 elsewhere",
    }
    return heat


def _explanations(cine, box, pre, shown, heat, localisation=None):
    """{frame index: {'heat': {label: map on the frame}, 'masks': ...}} for the best-frame pictures,
    from the kept Grad-CAM maps and the localisation result when there are any."""
    extras = {}
    for index, squares in ((heat or {}).get("kept") or {}).items():
        shape = cine.frames[index].shape[:2]
        extras.setdefault(index, {})["heat"] = {
            label: square_to_frame(np.asarray(square, dtype=np.float32), shape, box, pre) for label, square in squares.items()
        }
    if localisation is not None:
        for index in shown:
            extras.setdefault(index, {})["masks"] = {
                "spinal_cord": localisation["cord_masks"][index],
                "csf": localisation["csf_masks"][index],
            }
    return extras


def localise_cine(cine, calls, labels, job):
    """Cord and CSF masks and boxes on every frame from the installed localisation model
    (SpineAILib.workflows.ultrasound.localise, bundle lp-ultrasound/localiser), or None when there is none,
    SPINEAI_MASKS=0, or the cine is too large. Frames called bad quality get none."""
    if _switched_off("SPINEAI_MASKS"):
        return None
    try:
        from SpineAILib.workflows.ultrasound import localise as us_localise
    except ImportError:
        return None
    rows, cols = cine.frame_shape
    if cine.n_frames * rows * cols > LOCALISE_MAX_PIXELS:
        job.warnings.append("cord/CSF masks skipped: the cine is too large for per-frame masks")
        return None
    try:
        path = us_localise.default_localiser_path()
        if path is None:
            return None
        localiser = us_localise.load_localiser(path, device=job.device, backend="auto")
        result = us_localise.localise(localiser, cine.frames)
    except Exception as error:  # the masks are a bonus: report, keep the calls
        job.warnings.append(f"cord/CSF masks skipped ({type(error).__name__}: {' '.join(str(error).split())[:120]})")
        return None
    bad = calls[:, labels.index("bad_quality")] == 1
    result["cord_masks"][bad] = False
    result["csf_masks"][bad] = False
    for key in ("spinal_cord", "csf"):
        result["boxes"][key][bad] = np.nan
        if "scores" in result:
            result["scores"][key][bad] = 0.0
    job.results["localisation"] = {
        "bundle": str(path),
        "frames_with_cord_mask": int(result["cord_masks"].any(axis=(1, 2)).sum()),
        "frames_with_csf_mask": int(result["csf_masks"].any(axis=(1, 2)).sum()),
    }
    return result


def square_to_frame(square_map, frame_shape, box, pre):
    """A map on the model's input square -> the original frame's pixel grid (0 outside the crop)."""
    import cv2

    from SpineAILib.workflows.ultrasound.preprocess import centre_crop_box

    r0, r1, c0, c1 = centre_crop_box(box, pre.crop_fraction)
    h, w = r1 - r0, c1 - c0
    side = max(h, w) if pre.letterbox else None
    out = np.zeros(frame_shape, np.float32)
    if side:
        big = cv2.resize(square_map, (side, side), interpolation=cv2.INTER_LINEAR)
        top, left = (side - h) // 2, (side - w) // 2
        out[r0:r1, c0:c1] = big[top : top + h, left : left + w]
    else:
        out[r0:r1, c0:c1] = cv2.resize(square_map, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


# ---------------------------------------------------------------------------- scene


def calls_frames(cine, probs, calls, labels):
    """A small RGB copy of each frame with a coloured strip per call (for the synchronised sequence)."""
    import cv2

    rows, cols = cine.frame_shape
    scale = min(1.0, CALLS_SEQUENCE_MAX_SIDE / max(rows, cols))
    size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
    strip = max(6, size[1] // 16)
    out = np.empty((cine.n_frames, size[1] + strip, size[0], 3), np.uint8)
    colours = {"bad_quality": (230, 60, 60), "spinal_cord": (60, 220, 60), "csf": (70, 140, 255)}  # as us_localise
    for i, frame in enumerate(cine.frames):
        small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA) if scale < 1 else frame
        rgb = small if small.ndim == 3 else np.repeat(small[..., None], 3, axis=2)
        out[i, strip:] = rgb
        out[i, :strip] = 0
        width = size[0] // len(labels)
        for j, label in enumerate(labels):
            if calls[i, j]:
                out[i, :strip, j * width : (j + 1) * width - 2] = colours.get(label, (255, 255, 255))
            else:
                out[i, strip // 2 - 1 : strip // 2 + 1, j * width : (j + 1) * width - 2] = 90
    return out


def scene_copy(cine, max_side=SCENE_MAX_SIDE):
    """``cine`` itself, or for frames over ``max_side`` px (4K video) a downscaled copy with
    the pixel spacing scaled to match, made frame by frame (the scene holds a copy of every
    frame; at 4K that would double the memory for no visible gain)."""
    import cv2

    from SpineAILib.images import Cine

    rows, cols = cine.frame_shape
    scale = max_side / max(rows, cols)
    if scale >= 1:
        return cine
    size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
    frames = np.empty((cine.n_frames, size[1], size[0]) + cine.frames.shape[3:], np.uint8)
    for i, frame in enumerate(cine.frames):
        frames[i] = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    spacing = (cine.pixel_spacing[0] * rows / size[1], cine.pixel_spacing[1] * cols / size[0])
    return Cine(frames=frames, frame_times_ms=cine.frame_times_ms, pixel_spacing=spacing, modality=cine.modality,
                description=cine.description, source=cine.source, metadata=dict(cine.metadata), warnings=list(cine.warnings))


def write_scene(job, cine, probs, calls, labels, localisation=None, heats=None):
    from SpineAILib.images import Cine
    from SpineAILib.scene import SceneContext, add_cine, add_table, save_node, set_frame
    from SpineAILib.workflows.scene_outputs import save_scene

    out = Path(job.out_dir)
    ctx = SceneContext.headless()
    name = cine.description or Path(str(job.input_path)).stem or "Ultrasound"
    shown = scene_copy(cine)
    if shown is not cine:
        job.results["scene_cine_downscaled_to"] = list(shown.frame_shape)
    sequence, browser, proxy = add_cine(ctx, shown, name)
    columns = {
        "frame": list(range(cine.n_frames)),
        "time_ms": [round(float(t), 4) for t in cine.frame_times_ms],
        **{f"p_{label}": [round(float(v), 6) for v in probs[:, j]] for j, label in enumerate(labels)},
        **{label: [int(v) for v in calls[:, j]] for j, label in enumerate(labels)},
    }
    columns = {k: columns[k] for k in COLUMNS}
    table = add_table(ctx, "frames", columns)
    save_node(table, out / OUTPUTS["table"])
    job.outputs["table"] = OUTPUTS["table"]

    overlay_bytes = cine.n_frames * min(CALLS_SEQUENCE_MAX_SIDE, max(cine.frame_shape)) ** 2 * 3
    if overlay_bytes <= CALLS_SEQUENCE_MAX_BYTES:
        calls_cine = Cine(frames=calls_frames(cine, probs, calls, labels), frame_times_ms=cine.frame_times_ms,
                          pixel_spacing=cine.pixel_spacing, modality=cine.modality, description=f"{name} calls")
        calls_sequence, calls_browser, calls_proxy = add_cine(ctx, calls_cine, f"{name} calls")
        browser.AddSynchronizedSequenceNode(calls_sequence)
        ctx.scene.RemoveNode(calls_browser)
        for node in (calls_proxy.GetDisplayNode(), calls_proxy.GetStorageNode(), calls_proxy):
            if node is not None:
                ctx.scene.RemoveNode(node)
        set_frame(ctx, browser, 0)
    else:
        job.warnings.append("the per-frame calls sequence was left out of scene.mrb (cine too large); frames.tsv holds the calls")
    if localisation is not None and shown is cine:
        try:
            from SpineAILib.scene.cine_overlays import add_localisation_overlays

            add_localisation_overlays(ctx, browser, localisation)
        except Exception as error:
            job.warnings.append(f"cord/CSF mask sequences left out of scene.mrb ({type(error).__name__}: {' '.join(str(error).split())[:120]})")
    if heats is not None:
        try:
            from SpineAILib.scene.cine_overlays import add_heatmap_sequence

            # On its own coarse grid (us_heatmaps), hidden until the viewer's "Heat map" toggle.
            heat_sequence, _ = add_heatmap_sequence(ctx, browser, heats, name=f"{name} heat map", show=False, own_grid=True)
            save_node(heat_sequence, out / OUTPUTS["heatmap"])
            job.outputs["heatmap"] = OUTPUTS["heatmap"]
        except Exception as error:
            job.warnings.append(f"heat map sequence not written ({type(error).__name__}: {' '.join(str(error).split())[:120]})")
    save_scene(ctx, job, OUTPUTS["scene"])


class UltrasoundWorkflow(Workflow):
    name = LP_ULTRASOUND
    title = "Infant lumbar-puncture ultrasound"
    input_kind = "cine"
    modalities = ("US", "")
    description = "Per-frame image quality, spinal cord and CSF calls on an ultrasound cine"
    run = staticmethod(run)
