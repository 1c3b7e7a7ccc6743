"""What an unpacked scene bundle may name: only files inside itself.

A .mrml file is XML whose storage nodes name their data files (``fileName``,
``fileListMember0``...; relative to the .mrml's folder, percent-encoded) and may name
URIs to download. A hostile bundle could name ``/etc/passwd`` or ``../../x`` and have it
read as an image (and exported into a "de-identified" dataset), or a URL. Every such
name is checked against the one rule in ``io.checks.check_named_file`` before Slicer
reads anything; detached NRRD headers (.nhdr) in the bundle are checked the same way.
"""

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import unquote

from SpineAILib.errors import InputError
from SpineAILib.io.checks import check_detached_nrrd, check_named_file

_FILE_ATTRIBUTE = re.compile(r"(.*filename|filelistmember\d+)$", re.IGNORECASE)
_URI_ATTRIBUTE = re.compile(r"(uri|urilistmember\d+)$", re.IGNORECASE)


def find_mrml(folder, where):
    """The bundle's one .mrml file (at the top or one folder down, as Slicer writes it)."""
    found = sorted(Path(folder).glob("*.mrml")) + sorted(Path(folder).glob("*/*.mrml"))
    if not found:
        raise InputError(f"{where}: no .mrml scene file in this bundle")
    if len(found) > 1:
        raise InputError(f"{where}: holds {len(found)} .mrml scene files; a bundle holds one")
    return found[0]


def check_scene_files(mrml, root, where):
    """Refuse the bundle when its scene names a file outside ``root`` or any URI."""
    mrml = Path(mrml)
    try:
        tree = ET.parse(mrml)
    except (ET.ParseError, OSError, ValueError) as error:
        raise InputError(f"{where}: its scene file {mrml.name} is not readable XML ({error})") from None
    for element in tree.iter():
        for key, value in element.attrib.items():
            if not value:
                continue
            if _URI_ATTRIBUTE.match(key):
                raise InputError(f"{where}: a {element.tag} names the URI {unquote(value)!r}; refused (files only)")
            if _FILE_ATTRIBUTE.match(key):
                # Relative names are relative to the .mrml's folder; all must stay in the bundle.
                check_named_file(unquote(value), mrml.parent, where, what="file", container="the bundle")
    for header in Path(root).rglob("*"):
        if header.is_file() and header.name.lower().endswith((".nhdr", ".nrrd")):
            check_detached_nrrd(header)

