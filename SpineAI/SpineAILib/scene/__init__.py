"""Arrays <-> MRML: volumes, cines (sequence + browser), segmentations with terminology,
markups, tables; saving and loading them with Slicer's storage nodes and .mrb bundles.

Everything takes a ``SceneContext`` (scene + module logics), so the same calls work
headless, inside desktop 3D Slicer and in the trame-slicer web app. ``import slicer``
happens on first use, not when this package is imported.
"""

from SpineAILib.scene.context import SceneContext
from SpineAILib.scene.markups import add_points, add_roi, points_from_node, roi_geometry
from SpineAILib.scene.segmentations import LABEL_VALUE_TAG, add_segmentation_from_labelmap, labelmap_from_segmentation
from SpineAILib.scene.sequences import add_cine, cine_from_sequence, set_frame
from SpineAILib.scene.storage import load_node, load_scene_mrb, save_node, save_scene_mrb
from SpineAILib.scene.tables import add_table, table_to_columns
from SpineAILib.scene.volumes import add_volume, right_handed, volume_image_from_node

__all__ = [
    "LABEL_VALUE_TAG", "SceneContext", "add_cine", "add_points", "add_roi", "add_segmentation_from_labelmap",
    "add_table", "add_volume", "cine_from_sequence", "labelmap_from_segmentation", "load_node",
    "load_scene_mrb", "points_from_node", "right_handed", "roi_geometry", "save_node", "save_scene_mrb",
    "set_frame", "table_to_columns", "volume_image_from_node",
]  # fmt: skip
