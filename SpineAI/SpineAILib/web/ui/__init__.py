"""The web app's layout, one ``*_ui.py`` per panel section (as trame-slicer's ``app/ui``).

A UI module declares its section's state as a dataclass (``SpineAILib.web.typed_state``) and
draws Vuetify widgets bound to it; a button or key emits a signal of the UI object (an
``undo_stack.Signal``), which the section's logic (``SpineAILib.web.logic``) connects to.
Nothing here decides anything or imports a logic module. Elements carry ``spineai-*`` ids so
browser tests and users' scripts can find them.
"""
