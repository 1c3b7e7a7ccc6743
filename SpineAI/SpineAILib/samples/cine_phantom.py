"""A small synthetic ultrasound cine and writers that turn it into real files.

For reader tests and demos only (the realistic training generator lives elsewhere):
a speckle background that fades with depth, two bright curved echoes with acoustic
shadows below them, moving a few pixels across the frames. Writers produce an
Ultrasound Multi-frame DICOM (grey, RGB or YBR_FULL_422), an MP4/AVI video and a
folder of PNG frames, so each reader can be checked against known pixels and timing.
"""

from datetime import datetime
from pathlib import Path

import numpy as np

from SpineAILib.errors import OutputError
from SpineAILib.images import Cine

# ---------------------------------------------------------------------------- phantom


def make_cine_phantom(n_frames=12, rows=160, cols=200, seed=0, *, frame_time_ms=50.0, color=False, pixel_spacing=(0.3, 0.3)):
    """A grey (N, rows, cols) uint8 cine; ``color=True`` adds a red/blue
    Doppler-like patch, giving (N, rows, cols, 3) RGB frames."""
    rng = np.random.default_rng(seed)
    depth = np.linspace(1.0, 0.35, rows)[:, np.newaxis]  # attenuation with depth
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    frames = np.empty((n_frames, rows, cols), dtype=np.uint8)
    echoes = [(0.35, 0.30, 0.004), (0.60, 0.70, -0.003)]  # (depth, centre, curvature) as fractions
    for n in range(n_frames):
        phase = 2 * np.pi * n / max(n_frames, 1)
        image = _speckle(rng, rows, cols) * depth * 90.0
        for k, (d, c, curve) in enumerate(echoes):
            y0 = d * rows + 3.0 * np.sin(phase + k)  # moves up and down a few pixels
            x0 = c * cols + 2.0 * np.cos(phase + k)
            arc = y0 + curve * (x - x0) ** 2  # row of the echo at each column
            width = np.abs(x - x0) < 0.22 * cols
            distance = y - arc
            image *= np.where(width & (distance > 3), 0.25, 1.0)  # shadow under the echo
            image += np.where(width, 200.0 * np.exp(-0.5 * (distance / 1.5) ** 2), 0.0)
        frames[n] = np.clip(image, 0, 255)
    if color:
        frames = _add_doppler(frames)
    return Cine(
        frames=frames,
        frame_times_ms=np.arange(n_frames, dtype=np.float64) * frame_time_ms,
        pixel_spacing=tuple(float(s) for s in pixel_spacing),
        description="cine phantom",
        source="synthetic",
        metadata={"seed": seed},
    )


def _speckle(rng, rows, cols):
    """Rayleigh speckle, lightly smoothed along rows (the axial resolution)."""
    raw = rng.rayleigh(0.6, size=(rows + 2, cols)).astype(np.float32)
    return (raw[:-2] + raw[1:-1] + raw[2:]) / 3.0


def _add_doppler(frames):
    """A flow patch whose colour (red = towards, blue = away) alternates over time."""
    n, rows, cols = frames.shape
    rgb = np.repeat(frames[..., np.newaxis], 3, axis=-1)
    r0, r1, c0, c1 = rows // 5, rows // 5 + rows // 6, cols // 2, cols // 2 + cols // 5
    for t in range(n):
        colour = (230, 40, 30) if t % 2 == 0 else (30, 60, 230)
        rgb[t, r0:r1, c0:c1] = colour
    return rgb


# ---------------------------------------------------------------------------- DICOM


def write_cine_dicom(cine, path, *, color="MONOCHROME2", frame_time_ms=None, patient_name="Phantom^Cine", patient_id="PHANTOM-0001"):
    """Write ``cine`` as one Ultrasound Multi-frame Image Storage file.

    ``color``: MONOCHROME2 (grey), RGB, or YBR_FULL_422 (uncompressed, so each pair of
    pixels in a row shares one Cb/Cr: stored Y1 Y2 Cb Cr as PS3.5 C.7.6.3.1.2 defines).
    Pixel size goes into an ultrasound region in cm, as scanners write it.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    color = color.upper()
    if color not in ("MONOCHROME2", "RGB", "YBR_FULL_422"):
        raise ValueError(f"color must be MONOCHROME2, RGB or YBR_FULL_422, not {color!r}")
    frame_time_ms = float(frame_time_ms if frame_time_ms is not None else _frame_time(cine))
    ds = _us_dataset(cine, patient_name, patient_id, frame_time_ms)
    _set_pixels(ds, cine, color)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    try:
        pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
    except TypeError:  # pydicom 2.4 (Slicer's own)
        pydicom.dcmwrite(str(path), ds, write_like_original=False)
    return Path(path)


def _frame_time(cine):
    return float(np.mean(np.diff(cine.frame_times_ms))) if cine.n_frames > 1 else 50.0


def _us_dataset(cine, patient_name, patient_id, frame_time_ms):
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    now = datetime.now()
    ds = Dataset()
    ds.PatientName, ds.PatientID = patient_name, patient_id
    ds.PatientBirthDate = ds.PatientSex = ds.AccessionNumber = ds.ReferringPhysicianName = ""
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.Modality = "US"
    ds.Manufacturer = "SpineAI phantom"
    ds.SeriesDescription = "cine phantom"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.NumberOfFrames = cine.n_frames
    ds.FrameTime = f"{frame_time_ms:.6g}"
    ds.FrameIncrementPointer = 0x00181063  # (0018,1063) Frame Time
    ds.CineRate = max(1, int(round(1000.0 / frame_time_ms)))
    region = Dataset()
    region.RegionSpatialFormat = 1  # 2-D tissue
    region.RegionDataType = 1
    region.RegionFlags = 0
    region.RegionLocationMinX0 = region.RegionLocationMinY0 = 0
    region.RegionLocationMaxX1 = cine.frame_shape[1] - 1
    region.RegionLocationMaxY1 = cine.frame_shape[0] - 1
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3  # cm
    region.PhysicalDeltaX = float(cine.pixel_spacing[1]) / 10.0
    region.PhysicalDeltaY = float(cine.pixel_spacing[0]) / 10.0
    ds.SequenceOfUltrasoundRegions = [region]
    return ds


def _set_pixels(ds, cine, color):
    try:
        from pydicom.pixels import convert_color_space
    except ImportError:  # pydicom 2.4 (Slicer's own)
        from pydicom.pixel_data_handlers.util import convert_color_space

    frames = cine.grey_frames() if color == "MONOCHROME2" else _as_rgb(cine.frames)
    ds.Rows, ds.Columns = cine.frame_shape
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = color
    if color == "MONOCHROME2":
        ds.SamplesPerPixel = 1
        data = frames.tobytes()
    else:
        ds.SamplesPerPixel = 3
        ds.PlanarConfiguration = 0
        if color == "RGB":
            data = frames.tobytes()
        else:  # convert_color_space works in place: give it a copy
            data = _ybr_full_422_bytes(convert_color_space(frames.copy(), "RGB", "YBR_FULL", per_frame=True))
    ds.PixelData = data + (b"\0" if len(data) % 2 else b"")


def _as_rgb(frames):
    return frames if frames.ndim == 4 else np.repeat(frames[..., np.newaxis], 3, axis=-1)


def _ybr_full_422_bytes(ybr):
    """(N, rows, cols, 3) YBR_FULL -> native YBR_FULL_422 bytes: Y1 Y2 Cb Cr per pixel pair,
    chroma averaged over the pair."""
    if ybr.shape[2] % 2:
        raise ValueError("YBR_FULL_422 needs an even number of columns")
    y = ybr[..., 0].reshape(ybr.shape[0], ybr.shape[1], -1, 2)
    chroma = ybr[..., 1:].astype(np.uint16).reshape(ybr.shape[0], ybr.shape[1], -1, 2, 2)
    cb_cr = ((chroma[..., 0, :] + chroma[..., 1, :] + 1) // 2).astype(np.uint8)  # (N, rows, cols/2, 2)
    return np.concatenate([y, cb_cr], axis=-1).tobytes()


# ---------------------------------------------------------------------------- video and frames


VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}  # both write and read in opencv-python-headless


def write_cine_video(cine, path, fps=None):
    """Write ``cine`` as MP4 (MPEG-4 part 2) or AVI (Motion JPEG)."""
    import cv2

    path = Path(path)
    codec = VIDEO_CODECS.get(path.suffix.lower())
    if codec is None:
        raise OutputError(f"{path.name}: can write only {', '.join(VIDEO_CODECS)} videos")
    fps = float(fps if fps is not None else 1000.0 / _frame_time(cine))
    rows, cols = cine.frame_shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (cols, rows))
    if not writer.isOpened():
        raise OutputError(f"{path.name}: this OpenCV build cannot write {codec} video")
    try:
        for frame in cine.frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR if frame.ndim == 2 else cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def write_frame_folder(cine, folder, prefix="frame", suffix=".png"):
    """One image per frame, numbered without zero padding (frame1, frame2, ... frame10) so
    that readers must sort naturally."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, frame in enumerate(cine.frames, start=1):
        image = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        ok, encoded = cv2.imencode(suffix, image)
        if not ok:
            raise OutputError(f"cannot encode frame {n} as {suffix}")
        path = folder / f"{prefix}{n}{suffix}"
        encoded.tofile(str(path))
        paths.append(path)
    return paths
