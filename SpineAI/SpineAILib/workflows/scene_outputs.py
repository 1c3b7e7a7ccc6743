"""Result nodes and files the workflows write the same way."""


def save_table_and_heatmap(ctx, job, volume, title, columns, heat, roles):
    """A table node ``title`` (saved as ``roles['table']``) and, when ``heat`` is given, its Grad-CAM
    overlay over ``volume`` (saved as ``roles['heatmap']``), hidden until asked for: the table comes first.

    ``roles``: {"table": (output role, file name), "heatmap": (output role, file name)}."""
    from SpineAILib.scene.overlays import add_heatmap_overlay, set_heatmap_visible
    from SpineAILib.scene.storage import save_node
    from SpineAILib.scene.tables import add_table

    role, name = roles["table"]
    save_node(add_table(ctx, title, columns), job.out_dir / name)
    job.outputs[role] = name
    if heat is not None:
        role, name = roles["heatmap"]
        node = add_heatmap_overlay(ctx, heat, background_node=volume, name=f"{title} Grad-CAM")
        save_node(node, job.out_dir / name)
        job.outputs[role] = name
        set_heatmap_visible(ctx, node, False)


def save_scene(ctx, job, name):
    """The whole scene as ``name`` (.mrb) in the run folder, timed."""
    import time

    from SpineAILib.scene.storage import save_scene_mrb

    t0 = time.perf_counter()
    save_scene_mrb(ctx, job.out_dir / name)
    job.outputs["scene"] = name
    job.timings["scene_mrb_s"] = round(time.perf_counter() - t0, 3)


def ct_with_vertebrae(job, labelmap, filename, label_names=None):
    """A headless scene holding the job's CT and, when ``labelmap`` has any vertebra, its segmentation
    (saved as ``filename``, output role "segmentation"): (ctx, volume node, segmentation node or None)."""
    from SpineAILib.scene.context import SceneContext
    from SpineAILib.scene.segmentations import add_segmentation_from_labelmap
    from SpineAILib.scene.storage import save_node
    from SpineAILib.scene.volumes import add_volume

    ctx = SceneContext.headless()
    volume = add_volume(ctx, job.image, name=job.image.description or "CT")
    segmentation = None
    if labelmap is not None and labelmap.voxels.any():
        segmentation = add_segmentation_from_labelmap(ctx, labelmap, label_names=label_names, reference_node=volume,
                                                      name="Vertebrae")  # fmt: skip
        save_node(segmentation, job.out_dir / filename)
        job.outputs["segmentation"] = filename
    return ctx, volume, segmentation


def overlays_and_scene(ctx, job, volume, segmentation, centres, scene_name):
    """Sagittal, coronal (and with a segmentation, 3-D) overlays centred on the mean of ``centres`` (RAS),
    then the scene as ``scene_name``; timed."""
    import time

    import numpy as np

    from SpineAILib.render import render_views

    job.progress(0.85, "rendering overlays")
    t0 = time.perf_counter()
    centre = np.mean(centres, axis=0) if len(centres) else None
    views = ("sagittal", "coronal", "3d") if segmentation is not None else ("sagittal", "coronal")
    pictures = render_views(ctx, volume, job.out_dir, segmentation_node=segmentation, views=views, prefix="overlay",
                            center_ras=centre)  # fmt: skip
    for view, path in pictures.items():
        job.outputs[f"overlay_{view}"] = path.name
    job.timings["render_s"] = round(time.perf_counter() - t0, 3)
    job.progress(0.95, "saving the scene")
    save_scene(ctx, job, scene_name)
