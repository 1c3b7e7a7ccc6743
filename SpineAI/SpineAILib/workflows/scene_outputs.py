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
