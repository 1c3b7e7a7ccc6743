"""Cine <-> MRML sequence of 2-D frames with a browser and a proxy volume.

Each frame is a one-slice volume (scalar for grey, 3-component vector volume for
RGB) whose IJK->RAS is diag(-col_spacing, -row_spacing, 1): what Slicer gives an
image read from PNG, so the frame shows upright (row 0 at the top) in the axial view.
The sequence index is "time" in "ms"; index values are the frame times.
"""

import numpy as np

from SpineAILib.images import Cine, frame_ijk_to_ras
from SpineAILib.scene.volumes import numpy_matrix, vtk_matrix

INDEX_NAME = "time"
INDEX_UNIT = "ms"
SPACING_ATTRIBUTE = "SpineAI.PixelSpacing"
MODALITY_ATTRIBUTE = "SpineAI.Modality"


def format_time(ms):
    """Index value string: up to 4 decimals, no trailing zeros (what the .seq.nrrd header shows)."""
    return f"{float(ms):.4f}".rstrip("0").rstrip(".") or "0"


def add_cine(ctx, cine: Cine, name=None):
    """Add ``cine`` as (sequence node, browser node, proxy volume node), proxy at frame 0."""
    import slicer

    scene = ctx.scene
    name = scene.GenerateUniqueName(name or cine.description or "Cine")
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName(INDEX_NAME)
    sequence.SetIndexUnit(INDEX_UNIT)
    sequence.SetIndexType(slicer.vtkMRMLSequenceNode.NumericIndex)
    sequence.SetAttribute(SPACING_ATTRIBUTE, " ".join(repr(float(s)) for s in cine.pixel_spacing))
    if cine.modality:
        sequence.SetAttribute(MODALITY_ATTRIBUTE, cine.modality)

    # One frame node outside the scene, refilled per frame: the sequence deep-copies it.
    frame = slicer.vtkMRMLVectorVolumeNode() if cine.is_color else slicer.vtkMRMLScalarVolumeNode()
    frame.SetIJKToRASMatrix(vtk_matrix(frame_ijk_to_ras(cine.pixel_spacing)))
    times = [format_time(t) for t in cine.frame_times_ms]
    if len(set(times)) != len(times):
        raise ValueError("cine frame times must be distinct (at 0.0001 ms)")
    was_modifying = sequence.StartModify()
    for index, value in enumerate(times):
        slicer.util.updateVolumeFromArray(frame, np.ascontiguousarray(cine.frames[index][None]))
        sequence.SetDataNodeAtValue(frame, value)
    sequence.EndModify(was_modifying)

    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", scene.GenerateUniqueName(name + " browser"))
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    browser.SetPlaybackRateFps(_playback_fps(cine.frame_times_ms))
    browser.SetPlaybackLooped(True)
    set_frame(ctx, browser, 0)
    proxy = browser.GetProxyNode(sequence)
    if proxy.GetDisplayNode() is None:
        proxy.CreateDefaultDisplayNodes()
    _set_cine_display(proxy, cine)
    return sequence, browser, proxy


def _playback_fps(frame_times_ms):
    if len(frame_times_ms) < 2:
        return 10.0
    step = float(np.median(np.diff(frame_times_ms)))
    return 1000.0 / step if step > 0 else 10.0


def _set_cine_display(proxy, cine):
    display = proxy.GetDisplayNode()
    if display is None or cine.frames.dtype != np.uint8:
        return
    # Ultrasound pixels (grey or RGB) are display values already: show them 1:1, not stretched.
    display.AutoWindowLevelOff()
    display.SetWindowLevel(255.0, 127.5)


def set_frame(ctx, browser, index):
    """Show frame ``index`` in the proxy node(s) of ``browser``."""
    n = browser.GetNumberOfItems()
    if not 0 <= int(index) < n:
        raise IndexError(f"frame {index} out of range (0..{n - 1})")
    browser.SetSelectedItemNumber(int(index))
    ctx.sequences_logic.UpdateProxyNodesFromSequences(browser)
    return browser.GetProxyNode(browser.GetMasterSequenceNode())


def cine_from_sequence(sequence) -> Cine:
    """Inverse of ``add_cine``: frames, frame times, pixel spacing back from the sequence."""
    import slicer
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    n = sequence.GetNumberOfDataNodes()
    if n == 0:
        raise ValueError(f"{sequence.GetName()}: sequence is empty")
    frames, times = [], []
    for i in range(n):
        node = sequence.GetNthDataNode(i)
        array = slicer.util.arrayFromVolume(node)
        if array.shape[0] != 1:
            raise ValueError(f"{sequence.GetName()}: frame {i} has {array.shape[0]} slices; a cine needs 2-D frames")
        frames.append(np.array(array[0], copy=True))
        times.append(float(sequence.GetNthIndexValue(i)))
    spacing = sequence.GetAttribute(SPACING_ATTRIBUTE)
    if spacing:
        pixel_spacing = tuple(float(s) for s in spacing.split())
    else:  # a sequence made elsewhere: spacing from the first frame's geometry
        matrix = vtkMatrix4x4()
        sequence.GetNthDataNode(0).GetIJKToRASMatrix(matrix)
        m = numpy_matrix(matrix)
        pixel_spacing = (float(np.linalg.norm(m[:3, 1])), float(np.linalg.norm(m[:3, 0])))
    return Cine(
        frames=np.stack(frames),
        frame_times_ms=np.array(times),
        pixel_spacing=pixel_spacing,
        modality=sequence.GetAttribute(MODALITY_ATTRIBUTE) or "US",
        description=sequence.GetName() or "",
    )
