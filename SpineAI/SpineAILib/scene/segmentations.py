"""Label maps <-> segmentation nodes with names, colours, terminology and label values.

Every segment carries its label number in the tag ``SpineAI.LabelValue`` (saved in
.seg.nrrd and .mrb), so a segmentation turns back into the exact label map it came
from whatever order its segments are in.
"""

import numpy as np

from SpineAILib import terminology
from SpineAILib.images import VolumeImage
from SpineAILib.scene.volumes import add_volume, volume_image_from_node, vtk_safe_voxels

LABEL_VALUE_TAG = "SpineAI.LabelValue"


def default_label_names(values):
    """VerSe numbers -> vertebra names; other values -> 'Label N'."""
    names = {}
    for value in values:
        try:
            names[int(value)] = terminology.vertebra_name(int(value))
        except KeyError:
            names[int(value)] = f"Label {int(value)}"
    return names


def integer_labels(voxels):
    """Label voxels as an integer array VTK can hold (float labels must be whole numbers)."""
    if voxels.dtype.kind == "f":
        if not np.array_equal(voxels, np.round(voxels)):
            raise ValueError("label map has non-integer values; labels must be whole numbers")
        voxels = voxels.astype(np.int32)
    return vtk_safe_voxels(voxels)


def add_segmentation_from_labelmap(
    ctx, labelmap: VolumeImage, label_names=None, reference_node=None, name="Segmentation", closed_surface=True
):
    """A segmentation node with one segment per non-zero label of ``labelmap``.

    ``label_names``: {label value: name}; values missing from it keep their default
    name (vertebra names for VerSe numbers). Segment colours and terminology come
    from ``terminology.label_info(name)``. ``reference_node``: the volume whose
    geometry the segmentation is drawn on (Slicer's "source geometry").
    ``closed_surface``: also build the 3-D surface (for the 3-D view).
    """
    voxels = integer_labels(labelmap.voxels)
    values = [int(v) for v in np.unique(voxels) if v != 0]
    names = default_label_names(values)
    names.update({int(k): str(v) for k, v in (label_names or {}).items()})

    scene = ctx.scene
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
    segmentation_node.CreateDefaultDisplayNodes()
    if reference_node is not None:
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)

    # Import through a temporary label map node (the logic's documented path); all
    # labels at once, in ascending label order, sharing one labelmap layer.
    temp_image = VolumeImage(voxels=voxels, ijk_to_ras=labelmap.ijk_to_ras, is_labelmap=True)
    temp_node = add_volume(ctx, temp_image, name="SpineAI temporary labelmap")
    try:
        ok = ctx.segmentations_logic.ImportLabelmapToSegmentationNode(temp_node, segmentation_node)
    finally:
        _remove_with_display_and_storage(scene, temp_node)
    if not ok:
        scene.RemoveNode(segmentation_node)
        raise RuntimeError(f"could not import label map into segmentation '{name}'")

    # Imported segments carry their label value (and a name from Slicer's generic
    # "Labels" colour table, e.g. 20 -> "kales"): rename them from the value.
    segmentation = segmentation_node.GetSegmentation()
    for i in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(i)
        value = segment.GetLabelValue()
        describe_segment(segment, names.get(value, f"Label {value}"), value)
    if closed_surface and values:
        segmentation_node.CreateClosedSurfaceRepresentation()
    return segmentation_node


def describe_segment(segment, name, label_value=None):
    """Set a segment's name, colour, terminology and (optionally) label value tag."""
    info = terminology.label_info(name)
    segment.SetName(str(name))
    segment.SetColor(*info["color"])
    if info["terminology"]:
        segment.SetTerminology(info["terminology"])
    if label_value is not None:
        segment.SetLabelValue(int(label_value))  # Slicer's own label value (used on export)
        segment.SetTag(LABEL_VALUE_TAG, str(int(label_value)))


def segment_label_values(segmentation_node):
    """{segment id: label value} from the tags (1, 2, ... in order for untagged segments)."""
    segmentation = segmentation_node.GetSegmentation()
    values = {}
    for i in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(i)
        tag = get_tag(segmentation.GetSegment(segment_id), LABEL_VALUE_TAG)
        values[segment_id] = int(tag) if tag else i + 1
    return values


def get_tag(segment, key):
    """A segment tag's value, or None (vtkSegment.GetTag returns it through a reference)."""
    from vtkmodules.vtkCommonCore import reference

    value = reference("")
    return str(value) if segment.GetTag(key, value) else None


def labelmap_from_segmentation(ctx, segmentation_node, reference) -> VolumeImage:
    """The label map of ``segmentation_node`` on the grid of ``reference`` (volume node or VolumeImage).

    Values are the original label numbers (``SpineAI.LabelValue``); where segments
    overlap, the later segment wins (as in Slicer's export).
    """
    import slicer

    scene = ctx.scene
    temporary = []
    # The export adds a colour table per call; it is ours to remove with the label map.
    colors_before = {node.GetID() for node in ctx.nodes("vtkMRMLColorNode")}
    try:
        if isinstance(reference, VolumeImage):
            geometry = VolumeImage(
                voxels=np.zeros(reference.voxels.shape, np.uint8), ijk_to_ras=reference.ijk_to_ras
            )
            reference = add_volume(ctx, geometry, name="SpineAI temporary reference")
            temporary.append(reference)
        values = segment_label_values(segmentation_node)
        segment_ids = list(values)
        if not segment_ids:  # nothing to export: an empty label map on the reference grid
            empty = volume_image_from_node(reference)
            return VolumeImage(voxels=np.zeros(empty.voxels.shape, np.uint8), ijk_to_ras=empty.ijk_to_ras,
                               is_labelmap=True, description=segmentation_node.GetName())
        labelmap_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "SpineAI temporary export")
        temporary.append(labelmap_node)
        ids = _string_array(segment_ids)
        ok = ctx.segmentations_logic.ExportSegmentsToLabelmapNode(
            segmentation_node, ids, labelmap_node, reference, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
        )
        if not ok:
            raise RuntimeError(f"could not export segmentation '{segmentation_node.GetName()}' to a label map")
        image = volume_image_from_node(labelmap_node)
        # Without a colour table the export writes segment i as i + 1; map to label numbers.
        lookup = np.zeros(len(segment_ids) + 1, dtype=np.int64)
        for i, segment_id in enumerate(segment_ids):
            lookup[i + 1] = values[segment_id]
        dtype = _label_dtype(lookup.max())
        voxels = lookup[image.voxels.astype(np.int64)].astype(dtype)
        return VolumeImage(voxels=voxels, ijk_to_ras=image.ijk_to_ras, is_labelmap=True,
                           description=segmentation_node.GetName())
    finally:
        for node in temporary:
            _remove_with_display_and_storage(scene, node)
        for node in ctx.nodes("vtkMRMLColorNode"):
            if node.GetID() not in colors_before:
                scene.RemoveNode(node)


def _label_dtype(max_value):
    for dtype in (np.uint8, np.uint16, np.int32):
        if max_value <= np.iinfo(dtype).max:
            return dtype
    return np.int64


def _string_array(values):
    from vtkmodules.vtkCommonCore import vtkStringArray

    array = vtkStringArray()
    for value in values:
        array.InsertNextValue(value)
    return array


def _remove_with_display_and_storage(scene, node):
    for i in range(node.GetNumberOfDisplayNodes()):
        display = node.GetNthDisplayNode(i)
        if display is not None:
            scene.RemoveNode(display)
    storage = node.GetStorageNode() if hasattr(node, "GetStorageNode") else None
    if storage is not None:
        scene.RemoveNode(storage)
    scene.RemoveNode(node)
