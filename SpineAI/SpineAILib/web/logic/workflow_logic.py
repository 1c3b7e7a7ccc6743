"""The Workflows section: the task list, the task an input suggests, and Run (``run_task_isolated``
in a worker thread, its progress back through the loop, its results loaded when done)."""

import asyncio
import functools
import time
from pathlib import Path

from SpineAILib import results
from SpineAILib.vocabulary import TASKS as TASK_NAMES
from SpineAILib.web.logic.base_logic import BaseLogic, log_unexpected, one_line
from SpineAILib.web.ui.workflow_ui import WorkflowState


def import_tasks():
    """(the tasks module, '') or (None, why workflows are not available)."""
    try:
        from SpineAILib import tasks

        tasks.run_task_isolated  # noqa: B018 (fail here, not at Run, when it is missing)
        return tasks, ""
    except (ImportError, AttributeError) as error:
        return None, f"workflows are not available in this installation ({one_line(error)})"


class WorkflowLogic(BaseLogic[WorkflowState]):
    """``loader``: the load logic (the input a run works on, loading its results)."""

    def __init__(self, server, loader, out_dir):
        super().__init__(server, WorkflowState)
        self.loader = loader
        self.out_dir = Path(out_dir)
        self.tasks, self.tasks_error = import_tasks()
        self.typed.update(task_items=self._task_items(), workflows_available=self.tasks is not None,
                          task_status="" if self.tasks is not None else self.tasks_error,
                          task_error=self.tasks is None)
        loader.input_loaded.connect(self._on_input_loaded)
        loader.case_loaded.connect(self.choose_task)
        loader.input_replacing.connect(self.reset)
        loader.clearing.connect(self.reset)

    def reset(self):
        """Clear or another input: the last run's status and results folder belong to the old one
        (Prefill and Load results must not reach for them)."""
        if self.data.task_running:
            return
        self.typed.update(task_status="" if self.tasks is not None else self.tasks_error,
                          task_error=self.tasks is None, task_progress=0, fit_concerns=[], fit_task="")
        self.loader.data.results_path = ""

    def set_ui(self, ui):
        ui.run_clicked.connect(self.run)
        ui.run_anyway_clicked.connect(self.run_anyway)
        ui.stop_clicked.connect(self.stop)

    async def run_anyway(self, task, device="auto", load_path="", series=None):
        await self.run(task, device, load_path, series, checked=True)

    def stop(self):
        task = self.data.fit_task
        self.push(fit_concerns=[], fit_task="", task_error=False,
                  task_status=f"{task} not run: the input does not fit it" if task else "")

    async def _fit_concerns(self, task, image):
        """Why the input on screen may not fit ``task`` (SpineAILib.tasks.fit), [] when it fits."""
        try:
            from SpineAILib.tasks.fit import concerns

            return await asyncio.get_running_loop().run_in_executor(None, concerns, task, image)
        except Exception as error:  # a check that fails must not stop a run
            log_unexpected(error, "input check")
            return []

    def _task_items(self):
        if self.tasks is not None:
            from SpineAILib.workflows.registry import WORKFLOWS

            return [{"title": f"{name} — {w.title}", "value": name} for name, w in WORKFLOWS.items()]
        return [{"title": name, "value": name} for name in TASK_NAMES]

    def choose_task(self, task):
        if task in TASK_NAMES:
            self.data.task = task

    def _on_input_loaded(self, path, input_kind, modality):
        """Preselect the only workflow that takes this kind of input and modality, if one does."""
        if self.tasks is None:
            return
        from SpineAILib.workflows.registry import WORKFLOWS

        fitting = [n for n, w in WORKFLOWS.items() if w.input_kind == input_kind and modality in w.modalities]
        if len(fitting) == 1 or (fitting and self.data.task not in fitting):
            self.data.task = fitting[0]

    async def run(self, task, device="auto", load_path="", series=None, checked=False):
        """Run button: the input checked against the task (concerns: Run anyway or Stop), then
        run_task in a worker thread, progress back through the loop."""
        self.push(fit_concerns=[], fit_task="")
        if self.tasks is None:
            self.push(task_status=self.tasks_error, task_error=True)
            return
        shown = self.loader.input
        input_path = shown.path if shown is not None else (load_path or "").strip()
        if not input_path:
            self.push(task_status="load an image first (or type its path in Load)", task_error=True)
            return
        if not checked and shown is not None:
            found = await self._fit_concerns(task, shown.image)
            if found:
                self.push(fit_concerns=found, fit_task=task, task_error=False,
                          task_status=f"{task} waits: read why the input may not fit it, then Run anyway or Stop")
                return
        out = self.out_dir / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.push(task_running=True, task_progress=0, task_error=False, task_status=f"running {task} …")
        loop = asyncio.get_running_loop()

        def progress(fraction=None, message=""):
            loop.call_soon_threadsafe(self._on_progress, fraction, message)

        try:
            if shown is not None:
                series = shown.series  # the series that was loaded, not the picker's current value
            # A child process: the run's model, scene and offscreen rendering stay out of the server.
            run = functools.partial(self.tasks.run_task_isolated, task, input_path, out, device=device, series=series,
                                    progress=progress, dicom=bool(self.data.dicom))
            await loop.run_in_executor(None, run)
        except Exception as error:
            log_unexpected(error, f"workflow {task}")
            self.push(task_running=False, task_status=one_line(error), task_error=True)
            return
        self.push(task_progress=100, task_status=f"{task} done; loading results from {out}")
        results_path = None
        try:
            message = self.loader.load_results_folder(out)
            summary = results.report_summary(out)
            status = {"task_status": f"{task} done: {summary + ' — ' if summary else ''}{message}"}
            results_path = str(out)
        except Exception as error:
            status = {"task_status": f"{task} done, but its results did not load: {one_line(error)}", "task_error": True}
        # The lists first, the status last: "done" on screen means everything is shown.
        with self.state:
            self.data.task_running = False
            self.loader.views.refresh_lists()
        with self.state:
            if results_path is not None:
                self.loader.data.results_path = results_path
            self.typed.update(**status)

    def _on_progress(self, fraction, message):
        values = {}
        if isinstance(fraction, (int, float)):
            values["task_progress"] = max(0.0, min(100.0, fraction * 100 if fraction <= 1 else fraction))
        if message:
            values["task_status"] = " ".join(str(message).split())
        self.push(**values)
