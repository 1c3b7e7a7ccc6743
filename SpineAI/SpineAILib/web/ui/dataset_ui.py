"""The Dataset section (below Annotate): Export dataset, Import dataset, the imported cases."""

from dataclasses import dataclass, field

from trame.widgets import html
from trame.widgets import vuetify3 as v3
from undo_stack import Signal

from SpineAILib.web.typed_state import FlatState
from SpineAILib.web.ui.panel_ui import heading


@dataclass
class DatasetState:
    dataset_out: str = ""  # where Export writes (default: beside the open case)
    dataset_add: bool = False
    dataset_import_path: str = ""
    dataset_running: bool = False
    dataset_progress: float = 0
    dataset_message: str = ""
    dataset_error: bool = False
    dataset_cases: list = field(default_factory=list)  # [{"name", "split", "path"}] of the last import


class DatasetUI:
    export_clicked = Signal(str, bool)  # dataset folder, add to an existing dataset
    import_clicked = Signal(str)  # dataset folder
    case_clicked = Signal(str)  # an imported case folder: open it

    def __init__(self, server):
        self.typed = FlatState(server.state, DatasetState)

    def build(self):
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
                        click=(self.export_clicked, "[dataset_out, dataset_add]"))
            with html.Div(classes="d-flex align-center mt-2", style="gap: 6px"):
                v3.VTextField(v_model=("dataset_import_path",), id="spineai-dataset-import-path",
                              label="Dataset folder to import", density="compact", hide_details=True)
                v3.VBtn("Import", id="spineai-dataset-import", size="small", variant="tonal", disabled=("dataset_running",),
                        title="the dataset's cases as case folders (DATASET-cases beside it), to open and edit",
                        click=(self.import_clicked, "[dataset_import_path]"))
            v3.VProgressLinear(v_show=("dataset_running",), model_value=("dataset_progress",), height=4, color="primary",
                               classes="mt-1", id="spineai-dataset-progress")
            html.Div("{{ dataset_message }}", id="spineai-dataset-message", v_show=("dataset_message",),
                     title=("dataset_message",),
                     classes=("dataset_error ? 'text-error text-caption mt-1' : 'text-medium-emphasis text-caption mt-1'",),
                     style="white-space: nowrap; overflow: hidden; text-overflow: ellipsis;")
            with html.Div(id="spineai-dataset-cases", v_show=("dataset_cases.length",), classes="mt-1"):
                v3.VBtn("{{ c.name }}{{ c.split ? ' · ' + c.split : '' }}", v_for="c in dataset_cases", key="c.path",
                        classes="spineai-dataset-case text-none mr-1 mb-1", size="x-small", variant="outlined", title=("c.path",),
                        prepend_icon="mdi-folder-open-outline", click=(self.case_clicked, "[c.path]"))
