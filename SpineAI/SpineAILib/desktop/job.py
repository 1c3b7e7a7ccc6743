"""A `spineai ...` child process for the desktop module, on the shared protocol (runtime.child).

A reader thread collects the child's output lines; a Qt timer hands them to the GUI on
the main thread (Qt widgets must not be touched from other threads). The child is started
through ``slicer.util.launchConsoleProcess`` with PythonSlicer, so it gets Slicer's own
environment; the arguments, progress lines, error line and cancel are runtime.child's.
"""

import logging
import os
import queue
import shutil
import sys
import threading
import time

import qt
import slicer

from SpineAILib.runtime import child


def python_slicer():
    """Slicer's own Python launcher (PythonSlicer), which the child runs in."""
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    found = shutil.which("PythonSlicer")
    candidates = [found] if found else []
    candidates += [os.path.join(os.path.dirname(sys.executable), name), os.path.join(slicer.app.slicerHome, "bin", name)]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate):
            return candidate
    raise RuntimeError("PythonSlicer was not found next to Slicer; SpineAI cannot start its worker process")


def startup_pythonpath():
    """Slicer's own PYTHONPATH, which runtime.child extends with SpineAILib's folder."""
    existing = slicer.util.startupEnvironment().get("PYTHONPATH", "")
    return {"PYTHONPATH": existing} if existing else {}


def _launch(argv, env):
    logging.debug(f"SpineAI: launching {argv}")
    return slicer.util.launchConsoleProcess(argv, updateEnvironment=env)


def start(arguments):
    """A runtime.child.Child running `spineai ARGUMENTS` in PythonSlicer."""
    return child.start(arguments, python=python_slicer(), env=startup_pythonpath(), launch=_launch)


def run(arguments):
    """`spineai ARGUMENTS` to the end (blocking); its output lines, or SpineAIError with the one-line reason."""
    return child.run(arguments, python=python_slicer(), env=startup_pythonpath(), launch=_launch)


class Job:
    """One `spineai ...` in the background: ``onLine(line)``, ``onProgress(fraction, message)``
    and ``onFinished(job)`` are called on the Qt main thread."""

    POLL_MS = 200

    def __init__(self, arguments, onLine=None, onProgress=None, onFinished=None):
        self.onLine, self.onProgress, self.onFinished = onLine, onProgress, onFinished
        self._started, self._ended = time.time(), None
        self._queue = queue.Queue()
        self.child = start(arguments)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        self._timer = qt.QTimer()
        self._timer.setInterval(self.POLL_MS)
        self._timer.connect("timeout()", self._poll)
        self._timer.start()

    @property
    def lines(self):
        return self.child.lines

    @property
    def returncode(self):
        return self.child.returncode

    @property
    def cancelled(self):
        return self.child.cancelled

    @property
    def seconds(self):
        return (self._ended or time.time()) - self._started

    def reason(self):
        """The one-line reason of a failure (the CLI's `spineai: error:` line)."""
        return self.child.reason()

    def cancel(self):
        self.child.cancel()

    def _read(self):
        for line in self.child.read_lines():
            self._queue.put(line)
        self._queue.put(None)  # end of output

    def _poll(self):
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return
            if line is None:
                self._timer.stop()
                self.child.wait()
                self._ended = time.time()
                if self.onFinished:
                    self.onFinished(self)
                return
            progress = child.parse_progress(line)
            if progress is not None and self.onProgress:
                self.onProgress(*progress)
            if self.onLine:
                self.onLine(line)
