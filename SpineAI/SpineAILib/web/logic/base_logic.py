"""What every section's logic has: the server, its typed state, one-line errors."""

import logging
from typing import Generic, TypeVar

from SpineAILib.errors import SpineAIError
from SpineAILib.web.typed_state import FlatState

T = TypeVar("T")
log = logging.getLogger("SpineAILib.web")


def one_line(error):
    """A user-facing one-line reason for any exception."""
    if isinstance(error, SpineAIError):
        return str(error)
    text = " ".join(str(error).split()) or "no details"
    return f"{type(error).__name__}: {text}"


def log_unexpected(error, what):
    """A failure the user did not cause goes to the server log with its traceback."""
    if not isinstance(error, SpineAIError):
        log.error("%s failed", what, exc_info=error)


class BaseLogic(Generic[T]):
    """``server``: the trame server; ``state_type``: the section's state dataclass (or None)."""

    def __init__(self, server, state_type=None):
        self._server = server
        self.typed = FlatState(server.state, state_type) if state_type is not None else None

    @property
    def server(self):
        return self._server

    @property
    def state(self):
        return self._server.state

    @property
    def data(self) -> T:
        return self.typed.data

    @property
    def name(self) -> T:
        return self.typed.name

    def push(self, **values):
        """Set this section's entries and send them to the browser now."""
        self.typed.push(**values)

    def bind_changes(self, change_dict):
        self.typed.bind_changes(change_dict)

    def set_ui(self, ui):
        """Connect to the signals of this section's layout."""
