"""DICOM SEG: a run's label maps as Segmentation instances of the source series, and back.

A volume's label map (``vertebrae.seg.nrrd``) becomes one BINARY Segmentation whose
frames reference the source slices one for one (the label map is taken onto the
source grid first); segment labels and codes are those of the ``.seg.nrrd``
(``terminology.codes``). An ultrasound cine's cord/CSF masks become one Segmentation
per frame that has a mask, referencing that frame of the cine (ultrasound has no frame
of reference, and highdicom builds a multi-frame SEG only on one).
"""

import copy

import numpy as np

from SpineAILib import terminology
from SpineAILib.errors import InputError
from SpineAILib.images import VolumeImage

MANUFACTURER = "SpineAI"
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
# multi-frame SOP class -> its single-frame sibling (ultrasound, secondary capture)
SINGLE_FRAME_CLASS = {"1.2.840.10008.5.1.4.1.1.3.1": "1.2.840.10008.5.1.4.1.1.6.1",
                      "1.2.840.10008.5.1.4.1.1.7.4": "1.2.840.10008.5.1.4.1.1.7",
                      "1.2.840.10008.5.1.4.1.1.7.2": "1.2.840.10008.5.1.4.1.1.7",
                      "1.2.840.10008.5.1.4.1.1.7.3": "1.2.840.10008.5.1.4.1.1.7"}  # fmt: skip


def _concept(code):
    import highdicom as hd

    scheme, value, meaning = code
    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def segment_description(number, name, algorithm):
    """highdicom SegmentDescription of segment ``number`` called ``name`` (codes from terminology)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes as dcm_codes

    found = terminology.codes(name) or {"category": terminology.ANATOMICAL_STRUCTURE, "type": None, "region": None}
    type_ = found["type"] or ("99SPINEAI", f"label-{terminology.canonical_name(name)}", str(name))
    return hd.seg.SegmentDescription(
        segment_number=int(number),
        segment_label=str(name),
        segmented_property_category=_concept(found["category"]),
        segmented_property_type=_concept(type_),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=algorithm["name"], version=algorithm["version"], family=dcm_codes.cid7162.ArtificialIntelligence
        ),
        tracking_id=str(name),
        tracking_uid=hd.UID(),
        anatomic_regions=[_concept(found["region"])] if found.get("region") else None,
    )


def on_source_grid(labels: VolumeImage, shape, ijk_to_ras):
    """``labels`` resampled (nearest voxel) onto the grid ``shape`` (K, J, I) / ``ijk_to_ras``;
    a plain copy with an index offset when the grids share axes and spacing."""
    transform = np.linalg.inv(np.asarray(ijk_to_ras, float)) @ labels.ijk_to_ras  # label ijk -> source ijk
    out = np.zeros(shape, dtype=labels.voxels.dtype)
    offset = transform[:3, 3]
    if np.allclose(transform[:3, :3], np.eye(3), atol=1e-4) and np.allclose(offset, np.round(offset), atol=1e-3):
        di, dj, dk = (int(round(v)) for v in offset)
        src = labels.voxels
        ks, js, is_ = src.shape
        k0, j0, i0 = max(0, dk), max(0, dj), max(0, di)
        k1, j1, i1 = min(shape[0], dk + ks), min(shape[1], dj + js), min(shape[2], di + is_)
        if k1 > k0 and j1 > j0 and i1 > i0:
            out[k0:k1, j0:j1, i0:i1] = src[k0 - dk:k1 - dk, j0 - dj:j1 - dj, i0 - di:i1 - di]
        return out
    back = np.linalg.inv(transform)  # source ijk -> label ijk
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
    li, lj, lk = np.rint(back[:3] @ ijk).astype(np.int64)
    ks, js, is_ = labels.voxels.shape
    inside = (li >= 0) & (li < is_) & (lj >= 0) & (lj < js) & (lk >= 0) & (lk < ks)
    flat = out.reshape(-1)
    flat[inside] = labels.voxels[lk[inside], lj[inside], li[inside]]
    return out


def write_volume_seg(source, labels, segments, path, *, series_uid, series_number, instance_number, algorithm,
                     software_version):  # fmt: skip
    """One Segmentation of ``labels`` (a label map VolumeImage) on ``source``; returns its segment list
    (number, name, label value). ``segments``: [{"name", "label"}] of the label values to write."""
    import highdicom as hd

    grid = on_source_grid(labels, source.shape, source.ijk_to_ras)
    segments = [s for s in sorted(segments, key=lambda s: int(s["label"])) if np.any(grid == int(s["label"]))]
    if not segments:
        return []
    numbered = np.zeros(grid.shape, np.uint16)
    for number, segment in enumerate(segments, start=1):
        numbered[grid == int(segment["label"])] = number
    if source.multiframe:  # frames in the file's order, not K order
        n_frames = int(source.reference.NumberOfFrames)
        by_frame = np.zeros((n_frames, *grid.shape[1:]), np.uint16)
        for k, frame in enumerate(source.frames):
            by_frame[frame - 1] = numbered[k]
        numbered = by_frame
    descriptions = [segment_description(n, s["name"], algorithm) for n, s in enumerate(segments, start=1)]
    seg = hd.seg.Segmentation(
        source_images=source.datasets,
        pixel_array=numbered,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=algorithm["name"],
        software_versions=software_version,
        device_serial_number="0",
        content_label="SPINEAI",
        content_description=f"{algorithm['name']} {algorithm['version']}"[:64],
        series_description=f"SpineAI {algorithm['name']}"[:64],
        omit_empty_frames=False,  # every source slice has its frame: the SEG is a regular volume
    )
    seg.save_as(path)
    return [{"number": n, "name": s["name"], "label": int(s["label"])} for n, s in enumerate(segments, start=1)]


def write_frame_segs(source, masks, folder, *, series_uid, series_number, algorithm, software_version,
                     first_instance=1):  # fmt: skip
    """One Segmentation per frame that has a mask, referencing that frame of the source cine.

    ``masks``: {structure name: (N, rows, cols) bool}; segments are numbered in that order and
    may overlap (cord and CSF). Returns [(frame number, path)].
    """
    import highdicom as hd

    names = list(masks)
    stacked = np.stack([np.asarray(masks[name], bool) for name in names], axis=-1)  # (N, rows, cols, S)
    one_frame = copy.deepcopy(source.reference)
    # highdicom segments only a single-frame image when there is no frame of reference: build each SEG on a
    # single-frame copy of the header, then point its references at the frame of the real multi-frame instance
    sop_class = str(source.reference.SOPClassUID)
    for key in ("NumberOfFrames", "FrameIncrementPointer"):
        if key in one_frame:
            delattr(one_frame, key)
    one_frame.SOPClassUID = SINGLE_FRAME_CLASS.get(sop_class, sop_class)
    descriptions = [segment_description(n, name, algorithm) for n, name in enumerate(names, start=1)]
    written = []
    for index in np.flatnonzero(stacked.reshape(stacked.shape[0], -1).any(axis=1)):
        frame = int(index) + 1
        present = [name for s, name in enumerate(names) if stacked[index, ..., s].any()]
        seg = hd.seg.Segmentation(
            source_images=[one_frame],
            pixel_array=stacked[index][np.newaxis].astype(np.uint8),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=first_instance + len(written),
            manufacturer=MANUFACTURER,
            manufacturer_model_name=algorithm["name"],
            software_versions=software_version,
            device_serial_number="0",
            content_label="SPINEAI",
            content_description=f"frame {frame}: {', '.join(present)}"[:64],
            series_description=f"SpineAI {algorithm['name']} masks"[:64],
            omit_empty_frames=True,
        )
        _point_at_frame(seg, frame, sop_class)
        path = folder / f"seg_frame_{frame:04d}.dcm"
        seg.save_as(path)
        written.append((frame, path))
    return written


def _point_at_frame(seg, frame, sop_class):
    """Make every reference of a one-frame SEG name ``frame`` of the multi-frame source (of ``sop_class``)."""
    for series in seg.get("ReferencedSeriesSequence", []):
        for item in series.get("ReferencedInstanceSequence", []):
            item.ReferencedFrameNumber = frame
            item.ReferencedSOPClassUID = sop_class
    for item in seg.get("PerFrameFunctionalGroupsSequence", []):
        for derivation in item.get("DerivationImageSequence", []):
            for source in derivation.get("SourceImageSequence", []):
                source.ReferencedFrameNumber = frame
                source.ReferencedSOPClassUID = sop_class


# ---------------------------------------------------------------- reading back


def _unreadable(path, error):
    return InputError(f"{path}: not a readable DICOM SEG ({type(error).__name__}: {' '.join(str(error).split())[:160]})")


def _read(path):
    import highdicom as hd

    try:
        return hd.seg.segread(str(path))
    except Exception as error:
        raise _unreadable(path, error) from None


def segment_list(seg):
    """[{number, label, type, category}] of a Segmentation (highdicom)."""
    out = []
    for item in seg.SegmentSequence:
        out.append({
            "number": int(item.SegmentNumber),
            "label": str(item.get("SegmentLabel", "")),
            "type": str(item.SegmentedPropertyTypeCodeSequence[0].CodeMeaning),
            "category": str(item.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning),
        })  # fmt: skip
    return out


def describe_seg(path):
    """What a DICOM SEG holds, JSON-ready (``spineai info``)."""
    seg = _read(path)
    referenced = []
    for series in seg.get("ReferencedSeriesSequence", []):
        for item in series.get("ReferencedInstanceSequence", []):
            referenced.append(str(item.ReferencedSOPInstanceUID))
    return {
        "kind": "segmentation",
        "modality": "SEG",
        "description": str(seg.get("SeriesDescription", "")),
        "series_uid": str(seg.SeriesInstanceUID),
        "study_uid": str(seg.StudyInstanceUID),
        "frames": int(seg.get("NumberOfFrames", 1)),
        "dimensions": [int(seg.Columns), int(seg.Rows), int(seg.get("NumberOfFrames", 1))],
        "segmentation_type": str(seg.SegmentationType),
        "segments": segment_list(seg),
        "referenced_instances": len(set(referenced)),
        "source": str(path),
        "warnings": [],
    }


def read_seg(path):
    """A DICOM SEG as (label map VolumeImage on the SEG's own geometry, {label value: segment label}).

    Label values are the segment numbers. A SEG of a volume gives its whole grid (IJK->RAS from the
    plane positions); a SEG of one ultrasound frame gives that frame (row, column) as one slice,
    with ``metadata["referenced_frame"]``. A file whose header reads but whose frames do not (truncated
    pixel data, frame counts or positions that do not add up) is refused in one line like an unreadable one.
    """
    seg = _read(path)
    try:
        return _labelmap_of(seg, path)
    except InputError:
        raise
    except Exception as error:  # highdicom / numpy on crafted frames: ValueError, RuntimeError, KeyError ...
        raise _unreadable(path, error) from None


def _labelmap_of(seg, path):
    names = {s["number"]: s["label"] or s["type"] for s in segment_list(seg)}
    meta = {"segments": [{"name": n, "label": v, "layer": 0} for v, n in names.items()],
            "StudyInstanceUID": str(seg.StudyInstanceUID), "SeriesInstanceUID": str(seg.SeriesInstanceUID),
            "format": "DICOM SEG"}  # fmt: skip
    if "FrameOfReferenceUID" in seg:
        volume = seg.get_volume(combine_segments=True, relabel=False)
        affine = np.asarray(volume.affine, float)  # (slice, row, column) -> LPS
        matrix = np.eye(4)
        matrix[:3, 0], matrix[:3, 1], matrix[:3, 2] = affine[:3, 2], affine[:3, 1], affine[:3, 0]
        matrix[:3, 3] = affine[:3, 3]
        voxels = np.ascontiguousarray(volume.array).astype(np.uint16)
        return VolumeImage(voxels=voxels, ijk_to_ras=RAS_TO_LPS @ matrix, modality="SEG", description=meta_name(seg),
                           source=str(path), is_labelmap=True, metadata=meta), names  # fmt: skip
    frame = _referenced_frame(seg)
    pixels = _single_frame(seg)
    spacing = [1.0, 1.0]
    try:
        spacing = [float(v) for v in seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing]
    except (AttributeError, IndexError):
        pass
    meta["referenced_frame"] = frame
    matrix = np.diag([-spacing[1], -spacing[0], 1.0, 1.0])  # as images.frame_ijk_to_ras
    return VolumeImage(voxels=pixels[np.newaxis].astype(np.uint16), ijk_to_ras=matrix, modality="SEG",
                       description=meta_name(seg), source=str(path), is_labelmap=True, metadata=meta), names  # fmt: skip


def meta_name(seg):
    return str(seg.get("SeriesDescription", "") or "DICOM SEG")


def _referenced_frame(seg):
    for item in seg.get("PerFrameFunctionalGroupsSequence", []):
        for derivation in item.get("DerivationImageSequence", []):
            for source in derivation.get("SourceImageSequence", []):
                if "ReferencedFrameNumber" in source:
                    return int(source.ReferencedFrameNumber)
    return 1


def _single_frame(seg):
    """The one frame of a no-frame-of-reference SEG as a label map (segment numbers)."""
    frames = np.asarray(seg.pixel_array)
    if frames.ndim == 2:
        frames = frames[np.newaxis]
    out = np.zeros(frames.shape[1:], np.uint16)
    for index, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        out[frames[index] > 0] = number
    return out
