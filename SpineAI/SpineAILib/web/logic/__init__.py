"""The web app's behaviour, one ``*_logic.py`` per panel section (as trame-slicer's ``app/logic``).

Each logic owns the dataclass state of its section (declared beside its layout in
``SpineAILib.web.ui``), connects to that layout's signals in ``set_ui`` and calls into
``SpineAILib`` (io, scene, tasks, annotation, dataset). Logics know each other only as
objects handed to them by ``SpineAILib.web.app`` (never by importing a module above them),
and tell each other what happened through signals.
"""
