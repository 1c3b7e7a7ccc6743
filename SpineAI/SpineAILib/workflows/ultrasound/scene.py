"""What an ultrasound run writes besides its pictures: frames.tsv and scene.mrb.

The scene holds the cine as a sequence with a synchronised "calls" sequence, the
per-frame mask and box sequences when localised, the hidden heat-map sequence and
the table. Frames over 1280 px (4K video) enter the scene downscaled.
"""

from pathlib import Path

import numpy as np

from SpineAILib.vocabulary import ULTRASOUND_LABELS

OUTPUTS = {"table": "frames.tsv", "timeline": "timeline.png", "scene": "scene.mrb", "heatmap": "heatmap.seq.nrrd"}
COLUMNS = ("frame", "time_ms", *(f"p_{label}" for label in ULTRASOUND_LABELS), *ULTRASOUND_LABELS)
CALLS_SEQUENCE_MAX_BYTES = 96 * 1024**2  # the per-frame "calls" sequence in scene.mrb is skipped above this
CALLS_SEQUENCE_MAX_SIDE = 320
SCENE_MAX_SIDE = 1280  # larger frames (4K video) enter scene.mrb downscaled


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
