"""3-D connected components and binary opening on numpy masks.

Components come from VTK's vtkImageConnectivityFilter (VTK ships with slicer-core;
SciPy is not a dependency); opening and dilation use the separable numpy box max
filter ``max_filter`` (also the workflows' max-pooling without torch) with a box whose
edge is given in millimetres per axis, so anisotropic voxels are handled.
"""

import numpy as np


def max_filter(array, half, fill=-np.inf):
    """Max over a box of half-edge ``half[a]`` per axis (stride 1, same size; outside = ``fill``):
    max-pooling with kernel 2h+1 and padding h, one axis at a time (a box is separable)."""
    out = np.asarray(array)
    for axis, h in enumerate(half):
        h = int(h)
        if h <= 0:
            continue
        pad = [(0, 0)] * out.ndim
        pad[axis] = (h, h)
        padded = np.pad(out, pad, constant_values=fill)
        result = np.take(padded, np.arange(0, out.shape[axis]), axis=axis)
        for shift in range(1, 2 * h + 1):
            np.maximum(result, np.take(padded, np.arange(shift, shift + out.shape[axis]), axis=axis), out=result)
        out = result
    return out


def connected_components(mask):
    """(labels int32 array, sizes): components of a 3-D bool mask, 1 = largest, 0 = outside.

    Face connectivity (6 neighbours): bodies touching only at an edge or a corner stay apart.
    """
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkImagingMorphological import vtkImageConnectivityFilter

    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    if not mask.any():
        return np.zeros(mask.shape, np.int32), np.zeros(0, np.int64)
    image = vtkImageData()
    image.SetDimensions(mask.shape[2], mask.shape[1], mask.shape[0])  # VTK: x fastest = last numpy axis
    image.GetPointData().SetScalars(numpy_to_vtk(mask.ravel(), deep=True))
    connectivity = vtkImageConnectivityFilter()
    connectivity.SetInputData(image)
    connectivity.SetScalarRange(1, 1)
    connectivity.SetExtractionModeToAllRegions()
    connectivity.SetLabelModeToSizeRank()
    connectivity.SetLabelScalarTypeToInt()
    connectivity.Update()
    labels = vtk_to_numpy(connectivity.GetOutput().GetPointData().GetScalars()).reshape(mask.shape).astype(np.int32)
    sizes = vtk_to_numpy(connectivity.GetExtractedRegionSizes()).astype(np.int64)
    return labels, sizes


def component_indices(mask):
    """Flat voxel indices of each connected component of ``mask``, largest first."""
    components, sizes = connected_components(mask)
    flat = components.ravel()
    index = np.flatnonzero(flat)
    order = index[np.argsort(flat[index], kind="stable")]
    counts = np.bincount(flat[index], minlength=len(sizes) + 1)[1:]
    return np.split(order, np.cumsum(counts)[:-1]) if len(sizes) else []


def pieces_by_class(index, classes, min_voxels):
    """Split the voxels ``index`` (flat) of a class map into connected pieces of one class each, keeping
    pieces of at least ``min_voxels``: neighbours fused into one component come apart by their classes."""
    sub = np.zeros(classes.shape, bool)
    pieces = []
    for cls in np.unique(classes.ravel()[index]):
        sub.ravel()[:] = False
        sub.ravel()[index[classes.ravel()[index] == cls]] = True
        pieces += [part for part in component_indices(sub) if len(part) >= min_voxels]
    return pieces


def largest_component(mask):
    labels, sizes = connected_components(mask)
    return labels == 1 if len(sizes) else np.zeros(mask.shape, bool)


def opening(mask, radius_mm, spacing):
    """Binary opening with a box of half-edge ``radius_mm`` (per-axis voxels from ``spacing``, numpy axis order)."""
    half = [max(0, int(round(radius_mm / s))) for s in spacing]
    if not any(half):
        return mask.astype(bool)
    mask = np.ascontiguousarray(mask, dtype=bool)
    eroded = ~max_filter(~mask, half, fill=True)  # outside counts as background
    return max_filter(eroded, half, fill=False)


def dilation(mask, radius_mm, spacing):
    """Binary dilation of a 3-D mask with a box of half-edge ``radius_mm`` (per-axis voxels from ``spacing``)."""
    half = [max(0, int(round(radius_mm / s))) for s in spacing]
    return max_filter(np.ascontiguousarray(mask, dtype=bool), half, fill=False)
