"""Bounded undo / redo of annotation edits.

An edit is a list of ``Step``s, each saying what one store held before and after at one key
(a frame's labels, a block of a label map, a box, a point, a grade, an item's source). Undo
puts every "before" back in reverse order, redo every "after". The history keeps at most
``max_edits`` edits and ``max_bytes`` of label-map blocks; the oldest go first.
"""

from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Step:
    store: str  # which store of the session: "labels", "mask", "value", "source"
    key: object  # where in it (frame, (frame, Region), item name ...)
    before: object
    after: object

    @property
    def nbytes(self):
        return sum(v.nbytes for v in (self.before, self.after) if isinstance(v, np.ndarray))


@dataclass
class Edit:
    action: str  # what the user did, as logged ("paint", "toggle", ...)
    items: list  # item names it touched (see the package docstring)
    steps: list = field(default_factory=list)
    detail: str = ""

    @property
    def nbytes(self):
        return sum(step.nbytes for step in self.steps)


class History:
    def __init__(self, max_edits=100, max_bytes=512 * 1024**2):
        self.max_edits = int(max_edits)
        self.max_bytes = int(max_bytes)
        self._done = deque()
        self._undone = []

    def push(self, edit):
        """Record a new edit (it clears what could be redone)."""
        self._done.append(edit)
        self._undone.clear()
        while len(self._done) > self.max_edits or (len(self._done) > 1 and self.nbytes > self.max_bytes):
            self._done.popleft()

    @property
    def nbytes(self):
        return sum(edit.nbytes for edit in self._done)

    @property
    def can_undo(self):
        return bool(self._done)

    @property
    def can_redo(self):
        return bool(self._undone)

    def take_undo(self):
        """The edit to undo (moved to the redo list), or None."""
        if not self._done:
            return None
        edit = self._done.pop()
        self._undone.append(edit)
        return edit

    def take_redo(self):
        if not self._undone:
            return None
        edit = self._undone.pop()
        self._done.append(edit)
        return edit

    def clear(self):
        self._done.clear()
        self._undone.clear()
