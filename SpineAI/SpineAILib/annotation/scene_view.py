"""A case drawn in an MRML scene, and Slicer's Segment Editor edits read back into it.

``CaseLayers`` shows what the annotator is editing: the mask of the frame on screen (or of
the volume) as the slice views' label layer (a label-map node with the structures' colours;
rewriting its voxels after a stroke costs milliseconds), the boxes as markups ROIs and the
disc points as a point list, all locked (the front ends edit through the session).

The desktop module edits masks with Slicer's own Segment Editor instead:
``editable_segmentation`` makes a segmentation node with one segment per structure (empty
ones too, so each can be picked) and ``segmentation_labels`` reads it back as the label map
``AnnotationSession.set_mask`` takes.
"""

import numpy as np

from SpineAILib import terminology
from SpineAILib.annotation.case import CINE_STRUCTURES, DISC_LEVELS, structure_name

LAYER_NAME = "Annotation mask"
COLORS_NAME = "Annotation colours"
POINTS_NAME = "Disc levels (annotation)"
BOX_PREFIX = "Box "
ANNOTATION_ATTRIBUTE = "SpineAI.Annotation"  # on every node made here (so it can be found and removed)
LABEL_OPACITY = 0.5


def _ras_matrix(ijk_to_ras):
    from SpineAILib.scene.volumes import vtk_matrix

    return vtk_matrix(np.asarray(ijk_to_ras, float))


def _mark(node):
    node.SetAttribute(ANNOTATION_ATTRIBUTE, "1")
    return node


class CaseLayers:
    """The annotation nodes of one session in ``ctx``'s scene."""

    def __init__(self, ctx, case):
        self.ctx = ctx
        self.case = case
        self.label_node = None
        self.points_node = None
        self.box_nodes = {}  # label -> ROI node

    # -- mask ---------------------------------------------------------------------------------

    def _colour_table(self):
        scene = self.ctx.scene
        node = _mark(scene.AddNewNodeByClass("vtkMRMLColorTableNode", scene.GenerateUniqueName(COLORS_NAME)))
        node.SetTypeToUser()
        values = range(0, 3) if self.case.is_cine else range(0, 27)
        node.SetNumberOfColors(max(values) + 1)
        node.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
        for value in values:
            if value:
                name = structure_name(value, self.case.kind)
                r, g, b = terminology.label_info(name)["color"]
                node.SetColor(value, name, r, g, b, 1.0)
        return node

    def show_mask(self, frame=None):
        """Put the mask of ``frame`` (cine) or the volume into the label layer; returns the node."""
        import slicer

        labels = np.ascontiguousarray(self.case.mask_of(frame), dtype=np.uint8)
        scene = self.ctx.scene
        if self.label_node is None or not scene.IsNodePresent(self.label_node):
            node = _mark(scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", scene.GenerateUniqueName(LAYER_NAME)))
            node.SetHideFromEditors(True)  # the panel lists the case, not its helper nodes
            node.CreateDefaultDisplayNodes()
            node.GetDisplayNode().SetAndObserveColorNodeID(self._colour_table().GetID())
            node.SetIJKToRASMatrix(_ras_matrix(self.case.ijk_to_ras))
            self.label_node = node
        slicer.util.updateVolumeFromArray(self.label_node, labels)
        self.label_node.SetIJKToRASMatrix(_ras_matrix(self.case.ijk_to_ras))
        return self.label_node

    def attach_to_slice_views(self, opacity=LABEL_OPACITY):
        """Every slice view shows the annotation mask as its label layer."""
        for composite in self.ctx.nodes("vtkMRMLSliceCompositeNode"):
            composite.SetLabelVolumeID(self.label_node.GetID() if self.label_node is not None else None)
            composite.SetLabelOpacity(float(opacity))

    # -- boxes and points ---------------------------------------------------------------------------

    def show_boxes(self, frame=None):
        """ROIs for the boxes of ``frame`` (cine) or of the volume; others are removed."""
        scene = self.ctx.scene
        key = int(frame) if self.case.is_cine else None
        wanted = {label: box for (f, label), box in self.case.boxes.items() if f == key}
        for label in list(self.box_nodes):
            node = self.box_nodes[label]
            if label not in wanted or not scene.IsNodePresent(node):
                if scene.IsNodePresent(node):
                    scene.RemoveNode(node)
                del self.box_nodes[label]
        for label, box in wanted.items():
            center, size, axes = self.case.box_geometry(key, label)
            node = self.box_nodes.get(label)
            if node is None:
                node = _mark(scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", scene.GenerateUniqueName(BOX_PREFIX + label)))
                node.SetHideFromEditors(True)
                node.CreateDefaultDisplayNodes()
                display = node.GetDisplayNode()
                rgb = terminology.label_info(label)["color"]
                display.SetSelectedColor(*rgb)
                display.SetColor(*rgb)
                display.SetFillOpacity(0.0)  # outline only: the box must not hide the image
                display.SetHandlesInteractive(False)
                display.SetPropertiesLabelVisibility(False)  # the colour says which structure
                node.SetLocked(True)
                self.box_nodes[label] = node
            matrix = np.eye(4)
            matrix[:3, :3] = axes
            node.GetObjectToNodeMatrix().DeepCopy(_ras_matrix(matrix))
            node.SetCenter(*[float(v) for v in center])
            node.SetSize(*[float(v) for v in size])
            if node.GetNumberOfControlPoints():
                node.SetNthControlPointLabel(0, label)
        return dict(self.box_nodes)

    def show_points(self):
        """The disc-level points as one locked point list (None when the case has none)."""
        scene = self.ctx.scene
        points = [(level, self.case.points[level]) for level in DISC_LEVELS if level in self.case.points]
        if self.points_node is None or not scene.IsNodePresent(self.points_node):
            if not points:
                return None
            node = _mark(scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", scene.GenerateUniqueName(POINTS_NAME)))
            node.SetHideFromEditors(True)
            node.CreateDefaultDisplayNodes()
            node.SetLocked(True)
            self.points_node = node
        node = self.points_node
        was = node.StartModify()
        node.RemoveAllControlPoints()
        for level, ras in points:
            node.AddControlPoint([float(v) for v in ras], level)
        node.EndModify(was)
        return node

    def show(self, frame=None):
        """Everything of the case that belongs on screen at ``frame``."""
        self.show_mask(frame)
        self.show_boxes(frame)
        if not self.case.is_cine:
            self.show_points()

    def remove(self):
        """Take every annotation node (and its colour table) out of the scene."""
        scene = self.ctx.scene
        for composite in self.ctx.nodes("vtkMRMLSliceCompositeNode"):
            if self.label_node is not None and composite.GetLabelVolumeID() == self.label_node.GetID():
                composite.SetLabelVolumeID(None)
        for node in self.ctx.nodes("vtkMRMLNode"):
            if node.GetAttribute(ANNOTATION_ATTRIBUTE) == "1" and scene.IsNodePresent(node):
                scene.RemoveNode(node)
        self.label_node, self.points_node, self.box_nodes = None, None, {}


# -- the desktop Segment Editor ------------------------------------------------------------------


def editable_segmentation(ctx, case, frame=None, reference_node=None, node=None):
    """A segmentation node holding the mask of ``frame`` (or the volume) with one segment per
    structure (cord and CSF for a cine, the present vertebrae else), each carrying its label
    value; ``node``: refill this one instead of making a new one. Returns the node."""
    from SpineAILib.images import VolumeImage
    from SpineAILib.scene.segmentations import add_segmentation_from_labelmap, describe_segment

    labels = case.mask_of(frame)
    image = VolumeImage(voxels=labels, ijk_to_ras=case.ijk_to_ras, is_labelmap=True)
    names = {v: structure_name(v, case.kind) for v in (CINE_STRUCTURES.values() if case.is_cine else np.unique(labels)) if v}
    fresh = add_segmentation_from_labelmap(ctx, image, label_names=names, reference_node=reference_node,
                                           name="Annotation", closed_surface=False)
    segmentation = fresh.GetSegmentation()
    present = {segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())}
    for value, name in names.items():
        if name not in present:  # an empty structure is still offered in the Segment Editor
            segment_id = segmentation.AddEmptySegment(name, name)
            describe_segment(segmentation.GetSegment(segment_id), name, value)
    if node is None:
        return _mark(fresh)
    node.GetSegmentation().DeepCopy(segmentation)
    ctx.scene.RemoveNode(fresh)
    node.Modified()
    return node


def segmentation_labels(ctx, segmentation_node, case):
    """The label map (case grid) of an edited segmentation: what ``AnnotationSession.set_mask`` takes."""
    from SpineAILib.images import VolumeImage
    from SpineAILib.scene.segmentations import labelmap_from_segmentation

    reference = VolumeImage(voxels=np.zeros(case.grid_shape, np.uint8), ijk_to_ras=case.ijk_to_ras)
    return labelmap_from_segmentation(ctx, segmentation_node, reference).voxels.astype(np.uint8)
