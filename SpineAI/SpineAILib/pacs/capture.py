"""Secondary captures: the run's overlay pictures as DICOM images of the source's study,
so that a viewer without SEG or SR support still shows the result."""

import numpy as np


def write_capture(png_path, source, path, *, series_uid, series_number, instance_number, description):
    """``png_path`` (RGB) as a Secondary Capture Image in ``source``'s study; returns ``path``."""
    import highdicom as hd
    from PIL import Image

    with Image.open(png_path) as picture:
        pixels = np.ascontiguousarray(np.asarray(picture.convert("RGB"), dtype=np.uint8))
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source.reference,
        pixel_array=pixels,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=instance_number,
        manufacturer="SpineAI",
        patient_orientation=("A", "F"),  # placeholder, emptied below: a rendering has no one patient orientation
        transfer_syntax_uid=hd.UID("1.2.840.10008.1.2.1"),  # explicit VR little endian
    )
    sc.PatientOrientation = None  # type 2: present and empty
    sc.SeriesDescription = "SpineAI pictures"
    sc.DerivationDescription = str(description)[:1024]
    sc.BurnedInAnnotation = "YES"  # calls and labels are drawn into the picture
    sc.save_as(path)
    return path
