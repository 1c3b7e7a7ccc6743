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

from SpineAILib.models.bundle import trained_on_synthetic_data
from SpineAILib.vocabulary import LP_ULTRASOUND
from SpineAILib.workflows.base import Workflow
from SpineAILib.workflows.ultrasound.inference import FrameClassifier, best_frames, decide, smooth_centred
from SpineAILib.workflows.ultrasound.pictures import frame_explanations, plot_timeline, write_overlay
from SpineAILib.workflows.ultrasound.preprocess import content_box
from SpineAILib.workflows.ultrasound.scene import OUTPUTS, write_scene
from SpineAILib.workflows.ultrasound.screening import screen

LOCALISE_MAX_PIXELS = 120_000_000  # per-frame masks for cines up to this many pixels in all
BATCH = 32


def run(job):
    cine = job.image
    out = Path(job.out_dir)
    t0 = time.perf_counter()
    job.progress(0.02, "loading the ultrasound classifier")
    classifier = FrameClassifier(job.bundle_path, device=job.device, expected_task="lp-ultrasound")
    if classifier.backend_note:
        job.warnings.append(classifier.backend_note)
    if trained_on_synthetic_data(classifier.metadata):
        job.warnings.append(f"the per-frame calls come from {classifier.metadata.get('bundle_id')}, a model trained on "
                            "generated cines, not on real infant ultrasound: they show the pipeline working, not a "
                            "clinical reading")
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
    extras = frame_explanations(cine, box, classifier.preprocessor, shown, heat, localisation)
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
    from SpineAILib.models.engine import release_memory

    del classifier
    release_memory()
    t0 = time.perf_counter()
    write_scene(job, cine, probs, calls, labels, localisation, heat["heats"] if heat else None)
    job.timings["scene_s"] = round(time.perf_counter() - t0, 3)


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
            classifier.explainer, classifier.preprocessor, cine.frames, box, calls, labels, keep=shown,
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
    # the per-frame masks (N, rows, cols) by structure, for the DICOM SEG of `spineai run --dicom`
    job.arrays["frame_masks"] = {"spinal_cord": result["cord_masks"], "csf": result["csf_masks"]}
    job.results["localisation"] = {
        "bundle": str(path),
        "frames_with_cord_mask": int(result["cord_masks"].any(axis=(1, 2)).sum()),
        "frames_with_csf_mask": int(result["csf_masks"].any(axis=(1, 2)).sum()),
    }
    return result


WORKFLOW = Workflow(LP_ULTRASOUND, "Infant lumbar-puncture ultrasound", "cine", ("US", ""),
                    "Per-frame image quality, spinal cord and CSF calls on an ultrasound cine",
                    run)
