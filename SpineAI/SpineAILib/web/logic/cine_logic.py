"""The cine player: play / pause in real time from the frame times, the slider, the arrow keys,
jumps to a frame (a table row, Best frame, the timeline)."""

import asyncio
import bisect
import time

from undo_stack import Signal

from SpineAILib.scene import sequences
from SpineAILib.web.logic.base_logic import BaseLogic
from SpineAILib.web.ui.cine_ui import CineState

CINE_MIN_TICK_S = 0.04  # play at most ~25 frames/s: each frame is a server render + JPEG


class CineLogic(BaseLogic[CineState]):
    frame_changed = Signal(int)  # the cine moved to another frame (0-based)
    frame_shown = Signal(int)  # the frame on screen was (re)set, moved or not: the review follows

    def __init__(self, server, views):
        super().__init__(server, CineState)
        self.views = views
        self._play_task = None
        views.showing_changes.connect(self.stop)
        views.cine_shown.connect(self._on_cine_shown)
        self.bind_changes({self.name.cine_frame: self._on_cine_frame})

    def set_ui(self, ui):
        ui.play_clicked.connect(self.toggle_play)

    @property
    def cine(self):
        return self.views.cine

    def _on_cine_shown(self):
        cine = self.cine
        frame = cine.frame
        self.typed.update(cine_name=cine.sequence.GetName(),
                          cine_last=max(0, cine.sequence.GetNumberOfDataNodes() - 1), cine_frame=frame,
                          cine_time_ms=cine.times_ms[frame] if cine.times_ms else 0.0)

    def toggle_play(self):
        if self.cine is None:
            return
        if self.data.cine_playing:
            self.stop()
        else:
            self.data.cine_playing = True
            self.cine.browser.SetPlaybackActive(True)
            self._play_task = asyncio.ensure_future(self._play())

    def stop(self):
        if self._play_task is not None:
            self._play_task.cancel()
            self._play_task = None
        if self.cine is not None:
            self.cine.browser.SetPlaybackActive(False)
        self.data.cine_playing = False

    async def _play(self):
        """Step the browser in real time from the frame times, dropping frames when rendering lags."""
        browser, times = self.cine.browser, self.cine.times_ms
        n = len(times)
        if n < 2:
            self.push(cine_playing=False)
            return
        step_s = max(CINE_MIN_TICK_S, (times[-1] - times[0]) / (n - 1) / 1000.0)
        t_start = time.monotonic() - (times[browser.GetSelectedItemNumber()] - times[0]) / 1000.0
        duration_s = (times[-1] - times[0]) / 1000.0 + step_s
        while True:
            elapsed_ms = ((time.monotonic() - t_start) % duration_s) * 1000.0 + times[0]
            frame = max(0, bisect.bisect_right(times, elapsed_ms) - 1)
            if frame != browser.GetSelectedItemNumber():
                with self.state:
                    self._go_to_frame(frame)
                    self.typed.update(cine_frame=frame, cine_time_ms=times[frame])
            await asyncio.sleep(step_s)

    def _go_to_frame(self, frame):
        """Show ``frame``: ``frame_changed`` (the Annotate panel) when it moved, ``frame_shown`` (the review)."""
        browser = self.cine.browser
        if 0 <= frame < browser.GetNumberOfItems() and frame != browser.GetSelectedItemNumber():
            sequences.set_frame(self.views.scene_ctx, browser, frame)
            self.frame_changed(frame)
        self.frame_shown(frame)

    def jump_to_frame(self, frame):
        """Stop playback and show ``frame`` (clamped to the cine)."""
        if self.cine is None:
            return
        frame = min(max(int(frame), 0), self.cine.n_frames - 1)
        self.stop()
        with self.state:
            self._go_to_frame(frame)
            self.typed.update(cine_frame=frame, cine_time_ms=self.cine.times_ms[frame])

    def step_frame(self, delta):
        """Left / right keys: the previous / next frame of the cine (stops playback)."""
        if self.cine is None:
            return
        frame = self.cine.frame + int(delta)
        if 0 <= frame < self.cine.n_frames:
            self.jump_to_frame(frame)

    def _on_cine_frame(self, cine_frame):
        if self.cine is None:
            return
        frame = int(cine_frame or 0)
        times = self.cine.times_ms
        if 0 <= frame < len(times) and self.data.cine_time_ms != times[frame]:
            self.data.cine_time_ms = times[frame]
        self._go_to_frame(frame)
