"""In-memory images shared by every reader, task and front end.

Voxel arrays use Slicer's order, ``voxels[k, j, i]`` (slice, row, column), so
``slicer.util.updateVolumeFromArray`` takes them as they are, and the geometry is
always an explicit 4x4 IJK->RAS matrix (never implied by array order).
"""

from dataclasses import dataclass, field

import numpy as np

# The size limit and the voxel checks live with the other reader checks (io/checks.py);
# re-exported here because every reader and task imports them from this module.
from SpineAILib.io.checks import MAX_VOLUME_BYTES, check_allocation, check_finite, format_gib  # noqa: E402,F401


@dataclass
class VolumeImage:
    voxels: np.ndarray  # (K, J, I): slices, rows, columns
    ijk_to_ras: np.ndarray  # 4x4 float64
    modality: str = ""  # DICOM modality code: CT, MR, US, ... ("" = unknown)
    description: str = ""
    source: str = ""
    is_labelmap: bool = False
    metadata: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    def __post_init__(self):
        self.ijk_to_ras = np.asarray(self.ijk_to_ras, dtype=np.float64).reshape(4, 4)
        if self.voxels.ndim != 3:
            raise ValueError(f"volume voxels must be 3-D (K, J, I), got shape {self.voxels.shape}")

    @property
    def dimensions(self):
        """(I, J, K) as Slicer and NIfTI report them."""
        k, j, i = self.voxels.shape
        return (i, j, k)

    @property
    def spacing(self):
        """Voxel size along I, J, K in mm."""
        return tuple(float(np.linalg.norm(self.ijk_to_ras[:3, a])) for a in range(3))

    @property
    def origin(self):
        return tuple(float(v) for v in self.ijk_to_ras[:3, 3])

    @property
    def directions(self):
        """3x3 matrix whose columns are the unit I, J, K directions in RAS."""
        return self.ijk_to_ras[:3, :3] / np.array(self.spacing)

    @property
    def orientation(self):
        """Plane of the slices (normal along K): sagittal, coronal, axial or oblique."""
        return plane_of_normal(self.directions[:, 2])

    def ras_of_ijk(self, ijk):
        return (self.ijk_to_ras @ np.append(np.asarray(ijk, dtype=float), 1.0))[:3]

    def summary(self):
        return {
            "kind": "labelmap" if self.is_labelmap else "volume",
            "modality": self.modality,
            "description": self.description,
            "orientation": self.orientation,
            "dimensions": list(self.dimensions),
            "spacing": [round(s, 6) for s in self.spacing],
            "origin": [round(v, 6) for v in self.origin],
            "ijk_to_ras": np.round(self.ijk_to_ras, 6).tolist(),
            "dtype": str(self.voxels.dtype),
            "source": self.source,
            "warnings": list(self.warnings),
        }


@dataclass
class Cine:
    """A 2-D ultrasound cine (or a single frame, N == 1)."""

    frames: np.ndarray  # (N, rows, cols) grey uint8 or (N, rows, cols, 3) RGB uint8
    frame_times_ms: np.ndarray  # (N,) time of each frame from the start, ms
    pixel_spacing: tuple = (1.0, 1.0)  # (row, col) in mm; (1, 1) when the file does not say
    modality: str = "US"
    description: str = ""
    source: str = ""
    metadata: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    def __post_init__(self):
        if self.frames.ndim not in (3, 4) or (self.frames.ndim == 4 and self.frames.shape[3] != 3):
            raise ValueError(f"cine frames must be (N, rows, cols) or (N, rows, cols, 3), got {self.frames.shape}")
        self.frame_times_ms = np.asarray(self.frame_times_ms, dtype=np.float64)
        if self.frame_times_ms.shape != (self.frames.shape[0],):
            raise ValueError("one frame time per frame is required")

    @property
    def n_frames(self):
        return int(self.frames.shape[0])

    @property
    def is_color(self):
        return self.frames.ndim == 4

    @property
    def frame_shape(self):
        return tuple(int(v) for v in self.frames.shape[1:3])

    def grey_frames(self):
        """(N, rows, cols) uint8 luminance (ITU-R BT.601), for models and grey display."""
        if not self.is_color:
            return self.frames
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.clip(self.frames.astype(np.float32) @ weights + 0.5, 0, 255).astype(np.uint8)

    def summary(self):
        n = self.n_frames
        duration = float(self.frame_times_ms[-1]) if n > 1 else 0.0
        return {
            "kind": "cine",
            "modality": self.modality,
            "description": self.description,
            "frames": n,
            "frame_size": list(self.frame_shape),  # rows, cols
            "color": self.is_color,
            "pixel_spacing": [round(float(s), 6) for s in self.pixel_spacing],
            "frame_time_ms": round(duration / (n - 1), 3) if n > 1 else None,
            "duration_ms": round(duration, 3),
            "source": self.source,
            "warnings": list(self.warnings),
        }


def frame_ijk_to_ras(pixel_spacing):
    """A cine frame's IJK->RAS as every view shows frames: row 0 at the top, columns left to right."""
    row_mm, col_mm = (float(s) for s in pixel_spacing)
    return np.diag([-col_mm, -row_mm, 1.0, 1.0])


def plane_of_normal(normal, tolerance_deg=30.0):
    """Name the slice plane whose normal is closest to ``normal`` (RAS)."""
    n = np.abs(np.asarray(normal, dtype=float))
    n = n / (np.linalg.norm(n) or 1.0)
    axis = int(np.argmax(n))
    if np.degrees(np.arccos(min(1.0, n[axis]))) > tolerance_deg:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]
