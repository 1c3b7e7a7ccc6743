"""Label names, colours and standard terminology for everything SpineAI segments or marks.

Vertebrae are numbered as in VerSe (1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5, 25 L6,
26 S1 = sacrum, 28 T13). Colours are the same for every modality, one hue family
per spine region (cervical blues, thoracic greens, lumbar warm reds/oranges/magentas,
sacrum bone), neighbours alternating in brightness so adjacent levels stay apart.

Terminology strings are Slicer's serialised terminology entry (what
``vtkSegment.SetTerminology`` takes and ``.seg.nrrd`` stores):
``context~category~type~typeModifier~anatomicContext~region~regionModifier`` with each
code as ``scheme^value^meaning``. Codes are SNOMED CT (DICOM CID 7603 for the
vertebrae, CID 7151/7153 for cord and CSF); there is no standard code for
"bad image quality", so that one uses a private scheme (``99SPINEAI``, DICOM's
convention for private coding schemes).
"""

import colorsys

from SpineAILib import vocabulary

TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
ANATOMICAL_STRUCTURE = ("SCT", "123037004", "Anatomical Structure")

DISC_LEVELS = ["L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1"]
ULTRASOUND_LABELS = list(vocabulary.ULTRASOUND_LABELS)

# VerSe number -> name
VERTEBRAE = {i: f"C{i}" for i in range(1, 8)}
VERTEBRAE.update({7 + i: f"T{i}" for i in range(1, 13)})
VERTEBRAE.update({19 + i: f"L{i}" for i in range(1, 6)})
VERTEBRAE.update({25: "L6", 26: "S1", 28: "T13"})
_NUMBER_OF = {name: number for number, name in VERTEBRAE.items()}

# SNOMED CT codes of each vertebra (DICOM CID 7603 "Vertebra").
_VERTEBRA_SCT = {
    "C1": "14806007", "C2": "39976000", "C3": "113205007", "C4": "5329002", "C5": "36978003",
    "C6": "36054005", "C7": "87391001",
    "T1": "64864005", "T2": "53733008", "T3": "1626008", "T4": "73071006", "T5": "56401006",
    "T6": "45296009", "T7": "62487009", "T8": "11068009", "T9": "82687006", "T10": "7610001",
    "T11": "12989004", "T12": "23215003",
    "L1": "66794005", "L2": "14293000", "L3": "36470004", "L4": "11994002", "L5": "49668003",
}  # fmt: skip
_VERTEBRA_GENERIC = ("SCT", "51282000", "Vertebra")  # T13, L6: no level-specific code
_SACRUM = ("SCT", "54735007", "Sacrum")
_DISC = ("SCT", "360499006", "Intervertebral disc")
# DICOM CID 1003 "Level of Lx/Ly intervertebral disc" (SNOMED CT), kept as the region.
_DISC_LEVEL_SCT = {
    "L1/L2": "243920003", "L2/L3": "243921004", "L3/L4": "243922006",
    "L4/L5": "243923001", "L5/S1": "243927000",
}  # fmt: skip
_OTHER = {
    "spinal_cord": (("SCT", "2748008", "Spinal cord"), (244 / 255, 214 / 255, 49 / 255)),
    "csf": (("SCT", "65216001", "Cerebrospinal Fluid"), (85 / 255, 188 / 255, 255 / 255)),
}
_BAD_QUALITY_CATEGORY = ("99SPINEAI", "image-quality", "Image quality")
_BAD_QUALITY_TYPE = ("99SPINEAI", "bad-quality", "Bad image quality")
_ALIASES = {"spinal cord": "spinal_cord", "cord": "spinal_cord", "cerebrospinal fluid": "csf",
            "bad quality": "bad_quality", "sacrum": "S1"}  # fmt: skip

_LUMBAR_RGB = {  # hand-picked: five warm hues that stay apart on grey MRI and CT
    "L1": (0.90, 0.30, 0.30), "L2": (0.98, 0.62, 0.20), "L3": (0.95, 0.85, 0.30),
    "L4": (0.88, 0.40, 0.75), "L5": (0.62, 0.38, 0.90), "L6": (0.75, 0.20, 0.45),
}  # fmt: skip
_SACRUM_RGB = (0.85, 0.74, 0.55)


def _family(names, hue_from, hue_to, saturation=0.65):
    colors = {}
    for i, name in enumerate(names):
        hue = hue_from + (hue_to - hue_from) * i / max(1, len(names) - 1)
        value = 0.95 if i % 2 == 0 else 0.72
        colors[name] = tuple(round(c, 4) for c in colorsys.hsv_to_rgb(hue % 1.0, saturation, value))
    return colors


_COLORS = {}
_COLORS.update(_family([f"C{i}" for i in range(1, 8)], 0.50, 0.66))
_COLORS.update(_family([f"T{i}" for i in range(1, 14)], 0.20, 0.44))
_COLORS.update(_LUMBAR_RGB)
_COLORS["S1"] = _SACRUM_RGB
_COLORS.update(_family(DISC_LEVELS, 0.47, 0.58, saturation=0.35))
_COLORS.update({name: rgb for name, (_, rgb) in _OTHER.items()})
_COLORS["bad_quality"] = (1.0, 0.35, 0.0)


def vertebra_name(number):
    """VerSe label number -> 'C1' ... 'S1'; KeyError for numbers that are not vertebrae."""
    try:
        return VERTEBRAE[int(number)]
    except (KeyError, ValueError, TypeError):
        raise KeyError(f"{number!r} is not a VerSe vertebra number (1-26, 28)") from None


def vertebra_number(name):
    """'L1' (or 'l1', 'L1 vertebra', 'vertebrae_L1') -> 20; KeyError when unknown."""
    key = canonical_name(name)
    if key not in _NUMBER_OF:
        raise KeyError(f"{name!r} is not a vertebra name (C1-C7, T1-T13, L1-L6, S1)")
    return _NUMBER_OF[key]


def canonical_name(name_or_number):
    """The label's canonical name: a VerSe number or any spelling of a known label."""
    if isinstance(name_or_number, int) or (isinstance(name_or_number, str) and name_or_number.strip().isdigit()):
        return vertebra_name(int(name_or_number))
    text = str(name_or_number).strip()
    lowered = text.lower().replace("vertebrae_", "").replace(" vertebra", "").strip()
    if lowered in _ALIASES:
        return _ALIASES[lowered]
    if lowered.upper() in _NUMBER_OF or lowered.upper() in DISC_LEVELS:
        return lowered.upper()
    if lowered.replace("-", "/").upper() in DISC_LEVELS:
        return lowered.replace("-", "/").upper()
    if lowered.replace(" ", "_") in _COLORS:
        return lowered.replace(" ", "_")
    return text


def serialize(category, type_, region=("", "", "")):
    """Slicer terminology entry string (vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry)."""

    def code(c):
        return "^".join(c)

    return "~".join(
        [TERMINOLOGY_CONTEXT, code(category), code(type_), "^^", ANATOMIC_CONTEXT, code(region), "^^"]
    )


def terminology(name_or_number):
    """Terminology string of a known label, or None for names SpineAI does not know."""
    name = canonical_name(name_or_number)
    if name in _VERTEBRA_SCT:
        return serialize(ANATOMICAL_STRUCTURE, ("SCT", _VERTEBRA_SCT[name], f"{name} vertebra"))
    if name == "S1":
        return serialize(ANATOMICAL_STRUCTURE, _SACRUM)
    if name in _NUMBER_OF:
        return serialize(ANATOMICAL_STRUCTURE, _VERTEBRA_GENERIC)
    if name in _DISC_LEVEL_SCT:
        region = ("SCT", _DISC_LEVEL_SCT[name], f"Level of {name} intervertebral disc")
        return serialize(ANATOMICAL_STRUCTURE, _DISC, region)
    if name in _OTHER:
        return serialize(ANATOMICAL_STRUCTURE, _OTHER[name][0])
    if name == "bad_quality":
        return serialize(_BAD_QUALITY_CATEGORY, _BAD_QUALITY_TYPE)
    return None


def color(name_or_number):
    """RGB 0-1 of a known label; a stable colour derived from the name for unknown ones."""
    name = canonical_name(name_or_number)
    if name in _COLORS:
        return _COLORS[name]
    hue = (sum(ord(ch) * 31**i for i, ch in enumerate(name)) % 997) / 997.0
    return tuple(round(c, 4) for c in colorsys.hsv_to_rgb(hue, 0.6, 0.9))


def label_info(name_or_number):
    """dict(name, number (VerSe, vertebrae only, else None), color (rgb 0-1), terminology)."""
    name = canonical_name(name_or_number)
    return {
        "name": name,
        "number": _NUMBER_OF.get(name),
        "color": color(name),
        "terminology": terminology(name),
    }


def known_labels():
    """Every canonical name this module has a colour and terminology for."""
    return list(VERTEBRAE.values()) + DISC_LEVELS + ULTRASOUND_LABELS


def codes(name_or_number):
    """The coded concepts of a known label as (scheme, value, meaning) tuples, for DICOM SEG and SR:
    ``{"category", "type", "region"}`` (region None when there is none); None for unknown names.
    The same codes as the ``.seg.nrrd`` terminology string (one source: ``terminology``)."""
    entry = terminology(name_or_number)
    if entry is None:
        return None
    parts = entry.split("~")

    def code(text):
        scheme, value, meaning = (text.split("^") + ["", "", ""])[:3]
        return (scheme, value, meaning) if value else None

    return {"category": code(parts[1]), "type": code(parts[2]), "region": code(parts[5])}
