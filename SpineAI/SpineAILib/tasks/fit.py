"""Does this input fit this task? Asked before a run, so a front end can say so and let the user
go on or stop (the workflow itself refuses only what it cannot read at all).

``concerns(task, image)`` returns one line per doubt, [] when the input looks right:

* cervical-ct: no slice is neck-sized (a chest, abdomen or pelvis CT holds no cervical
  vertebrae: the run would only say "no cervical vertebrae found");
* lp-ultrasound: an image deeper than an infant spine scan (a cardiac or abdominal setting),
  a description naming the heart, or colour Doppler.

Cheap: a few slices or frames are looked at, no model is loaded.
"""

import re

import numpy as np

from SpineAILib.images import Cine, VolumeImage
from SpineAILib.vocabulary import CERVICAL_CT, LP_ULTRASOUND

NECK_WIDTH_MM = 220.0  # a neck (and a head) is narrower than this across; a chest or abdomen is wider
SOFT_TISSUE_HU = -200.0  # fat is about -100 HU; foam cushions and air are below
MAX_SPINE_DEPTH_MM = 80.0  # infant spine ultrasound images 2-6 cm deep with a linear probe
HEART_WORDS = re.compile(r"\b(echo\w*|cardiac|heart|tte|tee|apical|parasternal)\b", re.IGNORECASE)
BODY_WORDS = re.compile(r"\b(abd\w*|pelvis|chest|thorax|lumbar|body|liver|kidney)\b", re.IGNORECASE)


def concerns(task, image):
    """One line per reason to doubt that ``image`` fits ``task``; [] when nothing is doubtful."""
    from SpineAILib.workflows.registry import WORKFLOWS

    workflow = WORKFLOWS.get(task)
    if workflow is None:
        return []
    if isinstance(image, Cine) != (workflow.input_kind == "cine") or image.modality not in workflow.modalities:
        return []  # the wrong kind or modality: the workflow refuses it with its own reason
    if task == CERVICAL_CT and isinstance(image, VolumeImage):
        return _cervical(image)
    if task == LP_ULTRASOUND and isinstance(image, Cine):
        return _ultrasound(image)
    return []


def narrowest_body_mm(image, samples=16):
    """The narrowest left-right width in mm of the body (soft tissue, the largest connected part
    of each axial slice, the table left out) over up to ``samples`` axial slices."""
    from SpineAILib.ct_grid import Layout
    from SpineAILib.morphology import connected_components

    layout = Layout.of(image.voxels.shape, image.ijk_to_ras)
    canonical = layout.view(image.voxels)  # axes: superior-inferior, anterior-posterior, left-right
    n = canonical.shape[0]
    widths = []
    for index in np.unique(np.linspace(0, n - 1, min(samples, n)).round().astype(int)):
        mask = np.asarray(canonical[index]) > SOFT_TISSUE_HU
        labels, sizes = connected_components(mask[None])  # 1 = the largest part
        if not len(sizes) or sizes.max() * layout.spacing[1] * layout.spacing[2] < 2000:  # under 20 cm²: no body
            continue
        columns = np.where((labels[0] == 1).any(axis=0))[0]
        widths.append((columns[-1] - columns[0] + 1) * layout.spacing[2])
    return min(widths) if widths else None


def _cervical(image):
    out = []
    width = narrowest_body_mm(image)
    if width is not None and width > NECK_WIDTH_MM:
        out.append(f"no slice is neck-sized (the narrowest body section is {width:.0f} mm wide; a neck is under about "
                   f"{NECK_WIDTH_MM:.0f} mm): this looks like a chest, abdomen or pelvis CT without the cervical spine, "
                   "and the run would find no cervical vertebrae")
    words = BODY_WORDS.findall(f"{image.description} {image.metadata.get('BodyPartExamined', '')}")
    if words and not re.search(r"neck|cervical|c-?spine|head", image.description or "", re.IGNORECASE):
        out.append(f"the series is described as '{image.description}' ({', '.join(sorted(set(w.lower() for w in words)))}), "
                   "not a neck or cervical spine CT")
    return out


def _ultrasound(cine):
    out = []
    text = " ".join(str(v) for v in (cine.description, cine.metadata.get("BodyPartExamined", ""),
                                      cine.metadata.get("StudyDescription", ""), cine.metadata.get("SeriesDescription", "")))
    if HEART_WORDS.search(text):
        out.append(f"the file is described as a cardiac study ('{HEART_WORDS.search(text).group(0)}'): lp-ultrasound "
                   "reads infant lumbar spine scans")
    if cine.metadata.get("pixel_spacing_source"):  # the depth is known only when the file gives the pixel size
        depth = cine.frames.shape[1] * float(cine.pixel_spacing[0])
        if depth > MAX_SPINE_DEPTH_MM:
            out.append(f"the image is {depth:.0f} mm deep: a cardiac or abdominal setting (an infant spine scan is "
                       f"2–6 cm deep, with a high-frequency linear probe); the model was not trained on such images")
    if cine.is_color:  # the run's own screening measure, on a few frames
        from SpineAILib.workflows.ultrasound.preprocess import DOPPLER_FRACTION, colour_fraction, content_box

        box = content_box(cine.frames)
        colour = max(colour_fraction(frame, box) for frame in cine.frames[:: max(1, cine.n_frames // 8)])
        if colour > DOPPLER_FRACTION:
            out.append(f"{colour:.0%} of the pixels are coloured (colour Doppler): lp-ultrasound reads greyscale B-mode")
    return out
