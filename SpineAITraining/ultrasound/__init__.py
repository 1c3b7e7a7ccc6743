"""Synthetic infant lumbar-puncture ultrasound (generator) and the seeds' dataset layout (adapter).

``generate_cine(seed, machine, view)`` makes one labelled cine; ``write_seed_layout``
writes many in the seeds' folder layout; ``dataset.load_seed_layout`` reads that
layout (and the plain seeds' one) back for training, with splits by video.
"""

from .generator import BAD_KINDS, LABELS, MIN_VISIBLE_MM2, VIEWS, GeneratedCine, generate_cine, write_seed_layout
from .machines import MACHINES, MachineProfile
from .dataset import FrameDataset, VideoRecord, hold_out_machine, label_frequencies, load_seed_layout, split_by_frame, split_by_video

__all__ = [
    "BAD_KINDS", "LABELS", "MACHINES", "MIN_VISIBLE_MM2", "VIEWS", "GeneratedCine", "MachineProfile",
    "generate_cine", "write_seed_layout",
    "FrameDataset", "VideoRecord", "hold_out_machine", "label_frequencies", "load_seed_layout", "split_by_frame", "split_by_video",
]
