"""The Dataset section: Export dataset and Import dataset through ``SpineAILib.dataset.actions``,
which decides everything (the task is the open case's, the default folder ``<case parent>/dataset``,
the refusals and the one-line results). The export and the import run as the ``spineai`` command
line in a child process, waited for in a worker thread; progress and the result come back through
the server's loop. A listed imported case opens like a case folder typed in Load: its image, then
the case in the Annotate panel."""

import asyncio

from SpineAILib.dataset import actions
from SpineAILib.errors import SpineAIError
from SpineAILib.web.logic.base_logic import BaseLogic, log_unexpected, one_line
from SpineAILib.web.typed_state import FlatState
from SpineAILib.web.ui.annotate_ui import AnnotateState
from SpineAILib.web.ui.dataset_ui import DatasetState


class DatasetLogic(BaseLogic[DatasetState]):
    """``annotate``: the Annotate logic (the open case); ``loader``: the Load logic (opening a case)."""

    def __init__(self, server, annotate, loader):
        super().__init__(server, DatasetState)
        self.annotate = annotate
        self.loader = loader
        self._suggested = ""  # the last default put in dataset_out (replaced when another case opens)
        case = FlatState(server.state, AnnotateState).name
        self.state.change(case.annot_folder, case.annot_open)(self._on_case)

    def set_ui(self, ui):
        ui.export_clicked.connect(self.export)
        ui.import_clicked.connect(self.import_dataset)
        ui.case_clicked.connect(self.loader.load_typed)

    def _on_case(self, annot_folder="", annot_open=False, **_):
        """A case opened: suggest its dataset folder, unless the user typed another one."""
        if not annot_open or not annot_folder:
            return
        try:
            default = str(actions.default_dataset_folder(annot_folder))
        except SpineAIError:
            return
        if not self.data.dataset_out or self.data.dataset_out == self._suggested:
            self.data.dataset_out = default
        self._suggested = default

    async def export(self, out_dir, add=False):
        folders = self.annotate.case_folders()
        await self._run("export", lambda progress: actions.export_cases(folders, out_dir, add=bool(add),
                                                                         progress=progress))

    async def import_dataset(self, dataset_dir):
        await self._run("import", lambda progress: actions.import_cases(dataset_dir, progress=progress))

    async def _run(self, what, call):
        if self.data.dataset_running:
            return
        self.push(dataset_running=True, dataset_progress=0, dataset_error=False, dataset_message=f"{what} …")
        loop = asyncio.get_running_loop()

        def progress(fraction, message):
            loop.call_soon_threadsafe(self._on_progress, fraction, message)

        try:
            result = await loop.run_in_executor(None, call, progress)
        except Exception as error:
            log_unexpected(error, f"dataset {what}")
            self.push(dataset_running=False, dataset_error=True, dataset_message=one_line(error))
            return
        values = {"dataset_running": False, "dataset_progress": 100, "dataset_message": result.message}
        if what == "export" and not self.data.dataset_import_path:
            values["dataset_import_path"] = str(result.out_dir)
        if what == "import":
            values["dataset_cases"] = result.cases
        self.push(**values)

    def _on_progress(self, fraction, message):
        if self.data.dataset_running:
            self.push(dataset_progress=max(0.0, min(100.0, fraction * 100)), dataset_message=" ".join(message.split()))
