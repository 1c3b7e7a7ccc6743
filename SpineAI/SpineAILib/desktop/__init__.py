"""The desktop module's helpers (SpineAI/SpineAI.py stays Module / ParameterNode / Widget / Logic / Test).

* ``dependencies``: the dependency handler (plain Python; ``ensure`` runs in Slicer);
* ``job``: a ``spineai`` child process (runtime.child) whose lines reach the Qt main thread;
* ``annotate``: the Annotate section of the panel (Segment Editor, markups, keys, dataset buttons).

``job`` and ``annotate`` import qt / slicer: they are only imported inside Slicer.
"""
