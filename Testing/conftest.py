"""Shared pytest fixtures: where the real data is, and offscreen rendering."""

import os
import sys
from pathlib import Path

import pytest

# Offscreen OpenGL through Mesa EGL, without trying X first (no display here).
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

REPO = Path(__file__).resolve().parents[1]
# Tests live in subfolders that mirror the library; their shared helpers (this file,
# web_helpers, dataset_helpers) are imported by name from here.
sys.path.insert(0, str(Path(__file__).resolve().parent))
SHARED_DATA = Path(os.environ.get("SPINEAI_SHARED_DATA", REPO.parent / "shared" / "data"))
# The web app keeps runs and cases in a workspace (default ~/SpineAI-workspace): tests keep theirs
# in a temporary folder (servers they start inherit it) unless they name one.
if "SPINEAI_WORKSPACE" not in os.environ:
    import tempfile

    os.environ["SPINEAI_WORKSPACE"] = tempfile.mkdtemp(prefix="spineai-test-workspace-")


@pytest.fixture(scope="session")
def shared_data():
    """The real images in ../shared/data; tests that need them skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set SPINEAI_SHARED_DATA to point at it)")
    return SHARED_DATA


def require(path):
    """Skip (with the reason) when one real file is missing."""
    path = Path(path)
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


def one_line_error(call, *args, error=None, **kwargs):
    """Call ``call``; it must raise a SpineAI error (InputError by default) whose message is one line."""
    from SpineAILib.errors import InputError

    with pytest.raises(error or InputError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and message
    return message


def pytest_collection_modifyitems(config, items):
    """A test that takes the ``shared_data`` fixture (itself or through another fixture) needs
    ../shared/data: it carries the ``realdata`` marker even where the decorator is missing."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()) and item.get_closest_marker("realdata") is None:
            item.add_marker(pytest.mark.realdata)
