"""VolumeImage <-> MRML volume nodes (scalar volume or label map), geometry kept exactly."""

import dataclasses

import numpy as np

from SpineAILib.images import VolumeImage

# Slicer's CT presets (window, level) from the Volumes module.
CT_PRESETS = {"bone": (1000.0, 400.0), "soft-tissue": (400.0, 40.0)}
MODALITY_ATTRIBUTE = "SpineAI.Modality"
DESCRIPTION_ATTRIBUTE = "SpineAI.Description"


def vtk_matrix(array):
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r][c]))
    return matrix


def numpy_matrix(matrix):
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)


def vtk_safe_voxels(voxels):
    """Voxels in a dtype VTK can hold and render; values are never changed.

    int64/uint64 (what NIfTI readers often return for labels) become int32/uint32 when
    the values fit, else float64; bool becomes uint8; float16 becomes float32.
    """
    dtype = voxels.dtype
    if dtype == np.bool_:
        return voxels.astype(np.uint8)
    if dtype == np.float16:
        return voxels.astype(np.float32)
    if dtype.kind in "iu" and dtype.itemsize == 8:
        narrow = np.int32 if dtype.kind == "i" else np.uint32
        info = np.iinfo(narrow)
        if voxels.size == 0 or (voxels.min() >= info.min and voxels.max() <= info.max):
            return voxels.astype(narrow)
        return voxels.astype(np.float64)
    return voxels


def add_volume(ctx, image: VolumeImage, name=None, window_preset=None):
    """Add ``image`` as a scalar volume (or label map volume when ``image.is_labelmap``).

    Display: CT gets Slicer's bone preset when the values look like Hounsfield units
    (``window_preset`` = 'bone', 'soft-tissue' or 'auto' to choose); MR, US and
    anything else get automatic window/level.
    """
    import slicer

    class_name = "vtkMRMLLabelMapVolumeNode" if image.is_labelmap else "vtkMRMLScalarVolumeNode"
    name = ctx.scene.GenerateUniqueName(name or image.description or ("Labels" if image.is_labelmap else "Volume"))
    node = ctx.scene.AddNewNodeByClass(class_name, name)
    node.SetIJKToRASMatrix(vtk_matrix(image.ijk_to_ras))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(vtk_safe_voxels(image.voxels)))
    if image.modality:
        node.SetAttribute(MODALITY_ATTRIBUTE, image.modality)
    if image.description:
        node.SetAttribute(DESCRIPTION_ATTRIBUTE, image.description)
    node.CreateDefaultDisplayNodes()
    if not image.is_labelmap:
        set_window_level(node, image.modality, image.voxels, window_preset)
    return node


def set_window_level(node, modality, voxels, preset=None):
    display = node.GetDisplayNode()
    if display is None:
        return
    if preset is None and modality == "CT" and voxels.size and float(voxels.min()) < -500:
        preset = "bone"  # HU range with air in it; spine work is about bone
    if preset in CT_PRESETS:
        window, level = CT_PRESETS[preset]
        display.AutoWindowLevelOff()
        display.SetWindowLevel(window, level)
    else:
        display.AutoWindowLevelOn()


def volume_image_from_node(node) -> VolumeImage:
    """Exact inverse of ``add_volume``: voxels copied out, IJK->RAS as the node has it."""
    import slicer
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    if node is None or node.GetImageData() is None:
        raise ValueError("volume node has no image data")
    matrix = vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    voxels = np.array(slicer.util.arrayFromVolume(node), copy=True)
    if voxels.ndim != 3:
        raise ValueError(f"{node.GetName()}: not a scalar volume (array shape {voxels.shape})")
    return VolumeImage(
        voxels=voxels,
        ijk_to_ras=numpy_matrix(matrix),
        modality=node.GetAttribute(MODALITY_ATTRIBUTE) or "",
        description=node.GetAttribute(DESCRIPTION_ATTRIBUTE) or node.GetName() or "",
        is_labelmap=node.IsA("vtkMRMLLabelMapVolumeNode"),
    )


def right_handed(image: VolumeImage) -> VolumeImage:
    """The same physical image with a right-handed IJK->RAS (slice order reversed if needed).

    Slicer's volume readers do this on load (vtkMRMLVolumeArchetypeStorageNode), so a
    left-handed image saved and read back compares equal to ``right_handed(image)``.
    """
    matrix = image.ijk_to_ras
    if np.linalg.det(matrix[:3, :3]) >= 0:
        return image
    flipped = matrix.copy()
    n_slices = image.voxels.shape[0]
    flipped[:3, 3] = matrix[:3, 3] + (n_slices - 1) * matrix[:3, 2]
    flipped[:3, 2] = -matrix[:3, 2]
    return dataclasses.replace(image, voxels=image.voxels[::-1].copy(), ijk_to_ras=flipped)
