"""A run's output folder, read back: which files are results and how they enter a scene.

Shared by the web app and the desktop module so both show exactly the same things.

Heat maps, by file name (a convention every workflow follows):
* ``*heatmap.nrrd`` — a 3-D float volume (0..1) on the grid of the image it explains
  (e.g. ``severity_heatmap.nrrd``), shown over that image;
* ``*heatmap.seq.nrrd`` — a sequence of 2-D maps, one per frame of a cine (e.g. the
  ultrasound ``heatmap.seq.nrrd``), joined to the cine's browser so it plays with it.
Both are loaded as heat-map layers (coloured, low heat transparent) and left hidden:
``scene.overlays.set_heatmap_visible`` is the front ends' "Heat map" toggle.
"""

import json
from pathlib import Path

from SpineAILib.errors import InputError

NODE_FILE_SUFFIXES = (".seg.nrrd", ".mrk.json", ".tsv")
HEATMAP_SUFFIXES = ("heatmap.seq.nrrd", "heatmap.nrrd")  # sequence first: it also ends in .nrrd


def is_heatmap_file(path):
    return Path(path).name.lower().endswith(HEATMAP_SUFFIXES)


def result_files(folder):
    """The segmentations, markups, tables and heat maps in ``folder``, in a stable order.

    A table's ``.schema.tsv`` (its column types) is read with the table, not as a table.
    """
    folder = Path(folder)
    files = [
        path
        for suffix in NODE_FILE_SUFFIXES
        for path in sorted(folder.glob(f"*{suffix}"))
        if not path.name.endswith(".schema.tsv")
    ]
    return files + sorted(p for p in folder.glob("*.nrrd") if is_heatmap_file(p))


def report_input_path(folder):
    """The input a run was made from (report.json), if it still exists."""
    try:
        report = json.loads((Path(folder) / "report.json").read_text())
        source = report.get("input", {}).get("path")
    except (OSError, ValueError, AttributeError):
        return None
    return source if source and Path(source).exists() else None


def report_summary(folder):
    """One line for a front end's status: the run's message and its warnings (report.json), "" without one.

    The warnings are what a reader must not miss (a model trained on synthetic data, an
    estimated disc level, thick slices), so they are shown with the result, not left in the file."""
    try:
        report = json.loads((Path(folder) / "report.json").read_text())
        message = str((report.get("results") or {}).get("message") or "").strip()
        warnings = [" ".join(str(w).split()) for w in report.get("warnings") or []]
    except (OSError, ValueError, AttributeError):
        return ""
    parts = [message] if message else []
    if warnings:
        parts.append(f"{len(warnings)} warning{'s' if len(warnings) > 1 else ''}: " + " | ".join(warnings))
    return " — ".join(parts)


def load_results(ctx, folder):
    """Load every result file of ``folder`` into the scene; returns the new nodes.

    A heat map comes back as its layer (a volume node, see ``heatmap_layers``); a heat-map
    sequence whose cine is not in the scene comes back as the bare sequence node.
    """
    from SpineAILib.scene.storage import load_node

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder (give the output folder of a run)")
    files = result_files(folder)
    if not files:
        raise InputError(f"{folder}: no .seg.nrrd, .mrk.json, .tsv or heat-map results in it")
    return [load_heatmap(ctx, path) if is_heatmap_file(path) else load_node(ctx, path) for path in files]


def load_heatmap(ctx, path):
    """One heat-map file as a hidden heat-map layer over the image it explains (see the module
    docstring); a sequence whose cine is not in the scene is returned as the sequence node."""
    from SpineAILib.scene.cine_overlays import attach_heatmap_sequence
    from SpineAILib.scene.overlays import HEATMAP_ATTRIBUTE, matching_background, style_heatmap_display
    from SpineAILib.scene.storage import load_node

    path = Path(path)
    if path.name.lower().endswith(".seq.nrrd"):
        sequence = load_node(ctx, path, kind="sequence")
        proxy = attach_heatmap_sequence(ctx, sequence)
        return proxy if proxy is not None else sequence
    node = load_node(ctx, path, kind="volume")
    style_heatmap_display(ctx, node)
    background = matching_background(ctx, node)
    if background is not None:
        node.SetAttribute(HEATMAP_ATTRIBUTE, background.GetID())
    return node


def heatmap_layers(ctx, nodes=None):
    """The heat-map layers among ``nodes`` (default: the whole scene), in order; the last is
    the one a "Heat map" toggle shows."""
    from SpineAILib.scene.overlays import heatmap_layers as all_layers

    layers = all_layers(ctx)
    if nodes is None:
        return layers
    ids = {n.GetID() for n in nodes if n is not None}
    return [layer for layer in layers if layer.GetID() in ids]


def is_heatmap_layer(ctx, node):
    from SpineAILib.scene.overlays import is_heatmap_layer as check

    return check(ctx, node)
