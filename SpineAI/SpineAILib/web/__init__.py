"""The SpineAI web app (trame-slicer): ``SpineAILib.web.app.serve()`` / ``main()``.

Nothing is imported here so that ``spineai --help`` does not pay for trame and
slicer-core; import ``SpineAILib.web.app`` to use it.
"""
