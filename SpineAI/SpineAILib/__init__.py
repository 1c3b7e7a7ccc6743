"""SpineAILib: everything SpineAI does that does not need the Slicer GUI.

Heavy packages (torch, monai, slicer, vtk) are imported lazily inside the modules
that need them, so ``spineai --help`` and argument errors answer at once.
"""

__version__ = "0.1.0"
