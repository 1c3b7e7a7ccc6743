"""The web app's Dataset section (below Annotate): Export dataset and Import dataset.

Layout and bindings, and the calls into ``SpineAILib.dataset.actions``, which decides
everything (the task is the open case's, the default folder ``<case parent>/dataset``,
the refusals and the one-line results). The export and the import run as the ``spineai``
command line in a child process, waited for in a worker thread; progress and the result
come back through the server's loop. A listed imported case opens like a case folder
typed in Load: its image, then the case in the Annotate panel.
"""

import asyncio
import logging

from trame.widgets import html
from trame.widgets import vuetify3 as v3

from SpineAILib.dataset import actions
from SpineAILib.errors import SpineAIError

log = logging.getLogger(__name__)

DEFAULT_STATE = {
    "dataset_out": "",  # where Export writes (default: beside the open case)
    "dataset_add": False,
    "dataset_import_path": "",
    "dataset_running": False,
    "dataset_progress": 0,
    "dataset_message": "",
    "dataset_error": False,
    "dataset_cases": [],  # [{"name", "split", "path"}] of the last import
}


class WebDataset:
    """The Dataset section's actions on one app (the open case comes from ``app.annotator``)."""

    def __init__(self, app):
        self.app = app
        self._suggested = ""  # the last default put in dataset_out (replaced when another case opens)
        app.state.update(DEFAULT_STATE)
        app.state.change("annot_folder", "annot_open")(self._on_case)

    @property
    def state(self):
        return self.app.state

    def _on_case(self, annot_folder="", annot_open=False, **_):
        """A case opened: suggest its dataset folder, unless the user typed another one."""
        if not annot_open or not annot_folder:
            return
        try:
            default = str(actions.default_dataset_folder(annot_folder))
        except SpineAIError:
            return
        if not self.state.dataset_out or self.state.dataset_out == self._suggested:
            self.state.dataset_out = default
        self._suggested = default

    def _open_case_folder(self):
        session = self.app.annotator.session
        return [session.case.folder] if session is not None else []

    async def export(self, out_dir, add=False):
        await self._run("export", lambda progress: actions.export_cases(self._open_case_folder(), out_dir, add=bool(add),
                                                                         progress=progress))

    async def import_dataset(self, dataset_dir):
        await self._run("import", lambda progress: actions.import_cases(dataset_dir, progress=progress))

    async def _run(self, what, call):
        if self.state.dataset_running:
            return
        self._set(dataset_running=True, dataset_progress=0, dataset_error=False, dataset_message=f"{what} …")
        loop = asyncio.get_running_loop()

        def progress(fraction, message):
            loop.call_soon_threadsafe(self._on_progress, fraction, message)

        try:
            result = await loop.run_in_executor(None, call, progress)
        except Exception as error:
            if not isinstance(error, SpineAIError):
                log.exception("dataset %s failed", what)
            from SpineAILib.web.app import _one_line

            self._set(dataset_running=False, dataset_error=True, dataset_message=_one_line(error))
            return
        values = {"dataset_running": False, "dataset_progress": 100, "dataset_message": result.message}
        if what == "export" and not self.state.dataset_import_path:
            values["dataset_import_path"] = str(result.out_dir)
        if what == "import":
            values["dataset_cases"] = result.cases
        self._set(**values)

    def _on_progress(self, fraction, message):
        if self.state.dataset_running:
            self._set(dataset_progress=max(0.0, min(100.0, fraction * 100)), dataset_message=" ".join(message.split()))

    async def open_case(self, path):
        """A listed imported case: load it like a case folder typed in Load (image, then the case)."""
        self._set(load_path=path)
        await self.app.load(path)

    def _set(self, **values):
        with self.state:
            self.state.update(values)


def build(dataset, heading):
    """The Dataset section of the side panel."""
    heading("Dataset")
    with html.Div(id="spineai-dataset"):
        v3.VTextField(v_model=("dataset_out",), id="spineai-dataset-out", label="Export to dataset folder (on the server)",
                      density="compact", hide_details=True, clearable=True)
        with html.Div(classes="d-flex align-center mt-1", style="gap: 6px"):
            v3.VCheckbox(v_model=("dataset_add",), id="spineai-dataset-add", label="add to existing", density="compact",
                         hide_details=True, title="add the open case to the dataset already in the folder "
                         "(a case exported before is replaced by its new version)")
            v3.VBtn("Export dataset", id="spineai-dataset-export", size="small", color="primary",
                    disabled=("dataset_running",), title="de-identified export of the open case (its task)",
                    click=(dataset.export, "[dataset_out, dataset_add]"))
        with html.Div(classes="d-flex align-center mt-2", style="gap: 6px"):
            v3.VTextField(v_model=("dataset_import_path",), id="spineai-dataset-import-path",
                          label="Dataset folder to import", density="compact", hide_details=True)
            v3.VBtn("Import", id="spineai-dataset-import", size="small", variant="tonal", disabled=("dataset_running",),
                    title="the dataset's cases as case folders (DATASET-cases beside it), to open and edit",
                    click=(dataset.import_dataset, "[dataset_import_path]"))
        v3.VProgressLinear(v_show=("dataset_running",), model_value=("dataset_progress",), height=4, color="primary",
                           classes="mt-1", id="spineai-dataset-progress")
        html.Div("{{ dataset_message }}", id="spineai-dataset-message", v_show=("dataset_message",),
                 title=("dataset_message",),
                 classes=("dataset_error ? 'text-error text-caption mt-1' : 'text-medium-emphasis text-caption mt-1'",),
                 style="white-space: nowrap; overflow: hidden; text-overflow: ellipsis;")
        with html.Div(id="spineai-dataset-cases", v_show=("dataset_cases.length",), classes="mt-1"):
            v3.VBtn("{{ c.name }}{{ c.split ? ' · ' + c.split : '' }}", v_for="c in dataset_cases", key="c.path",
                    classes="spineai-dataset-case text-none mr-1 mb-1", size="x-small", variant="outlined", title=("c.path",),
                    prepend_icon="mdi-folder-open-outline", click=(dataset.open_case, "[c.path]"))
