"""The Load section (a file or DICOM folder on the server, the series picker) and the Load
results section (a run's output folder)."""

from dataclasses import dataclass, field

from trame.widgets import html
from trame.widgets import vuetify3 as v3
from undo_stack import Signal

from SpineAILib.web.typed_state import FlatState
from SpineAILib.web.ui.panel_ui import heading, message_line

LOAD_AS_ITEMS = [
    {"title": "auto", "value": "auto"},
    {"title": "image", "value": "image"},
    {"title": "segmentation", "value": "segmentation"},
]


@dataclass
class LoadState:
    load_path: str = ""
    load_as: str = "auto"
    load_series: object = None
    series_items: list = field(default_factory=list)
    load_message: str = ""
    load_error: bool = False
    busy: bool = False  # a load is on its way: Load and Load results wait
    results_path: str = ""  # the run folder Load results / Prefill use (the last Run's by default)


class LoadUI:
    load_clicked = Signal(str, str, object)  # path, load as, series
    results_clicked = Signal(str)  # run folder

    def __init__(self, server):
        self.typed = FlatState(server.state, LoadState)

    def build(self):
        n = self.typed.name
        heading("Load")
        load_args = f"[{n.load_path}, {n.load_as}, {n.load_series}]"
        # Values are passed with the click so the server never acts on a stale path.
        v3.VTextField(v_model=(n.load_path,), id="spineai-load-path", label="File or DICOM folder on the server",
                      density="compact", hide_details=True, clearable=True,
                      __events=[("keyup_enter", "keyup.enter")], keyup_enter=(self.load_clicked, load_args))
        with html.Div(classes="d-flex align-center mt-2", style="gap: 8px"):
            v3.VSelect(v_model=(n.load_as,), items=("load_as_items", LOAD_AS_ITEMS), label="as", density="compact",
                       hide_details=True, style="max-width: 160px")
            v3.VBtn("Load", id="spineai-load-button", color="primary", loading=(n.busy,),
                    disabled=(f"{n.busy} || !{n.load_path}",), click=(self.load_clicked, load_args))
        # Shown when a DICOM folder holds several series: the user picks one, then Load.
        v3.VSelect(v_model=(n.load_series,), v_show=(f"{n.series_items}.length",), items=(n.series_items,),
                   id="spineai-series", label="Series in this folder", density="compact", hide_details=True,
                   classes="mt-2")
        message_line(n.load_message, n.load_error, "spineai-load-message")

    def build_results(self):
        n = self.typed.name
        heading("Load results")
        v3.VTextField(v_model=(n.results_path,), id="spineai-results-path", label="Output folder of a run",
                      density="compact", hide_details=True, clearable=True,
                      __events=[("keyup_enter", "keyup.enter")],
                      keyup_enter=(self.results_clicked, f"[{n.results_path}]"))
        v3.VBtn("Load results", id="spineai-results-button", size="small", classes="mt-2",
                disabled=(f"{n.busy} || !{n.results_path}",), click=(self.results_clicked, f"[{n.results_path}]"))
