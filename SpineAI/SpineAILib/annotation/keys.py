"""The annotation keyboard, shared by the web app and the desktop module.

``action_for(key, ctrl, shift)`` turns a key press (the browser's ``KeyboardEvent.key``;
the desktop module passes Qt's key text the same way) into ``(action, argument)``:

    Left / Right      previous / next frame            ("frame", -1 / +1)
    1 or Q            toggle bad quality               ("toggle", "bad_quality")
    2 or W            toggle spinal cord               ("toggle", "spinal_cord")
    3 or E            toggle CSF                       ("toggle", "csf")
    C                 copy the previous frame's labels ("copy_previous", None)
    Ctrl+Z            undo                             ("undo", None)
    Ctrl+Y, Ctrl+Shift+Z  redo                         ("redo", None)

Anything else gives None (the key is left to the page).
"""

TOGGLES = {"1": "bad_quality", "q": "bad_quality", "2": "spinal_cord", "w": "spinal_cord", "3": "csf", "e": "csf"}
HELP = "←/→ frame · 1/Q bad quality · 2/W cord · 3/E CSF · C copy previous · Ctrl+Z undo · Ctrl+Y redo"


def action_for(key, ctrl=False, shift=False):
    key = str(key or "")
    lower = key.lower()
    if ctrl:
        if lower == "z":
            return ("redo", None) if shift else ("undo", None)
        if lower == "y":
            return ("redo", None)
        return None
    if key in ("ArrowLeft", "Left"):
        return ("frame", -1)
    if key in ("ArrowRight", "Right"):
        return ("frame", 1)
    if lower in TOGGLES:
        return ("toggle", TOGGLES[lower])
    if lower == "c":
        return ("copy_previous", None)
    return None
