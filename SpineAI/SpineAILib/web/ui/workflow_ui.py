"""The Workflows section: task, device, Run, progress and the run's status line."""

from dataclasses import dataclass, field

from trame.widgets import html
from trame.widgets import vuetify3 as v3
from undo_stack import Signal

from SpineAILib.vocabulary import DEVICES
from SpineAILib.web.typed_state import FlatState
from SpineAILib.web.ui.panel_ui import heading, message_line

DEVICE_ITEMS = list(DEVICES)


@dataclass
class WorkflowState:
    task: str = "lumbar-mri"
    task_items: list = field(default_factory=list)
    device: str = "auto"
    dicom: bool = False  # also write DICOM SEG / SR / secondary captures (DICOM inputs only)
    workflows_available: bool = True
    task_running: bool = False
    task_progress: float = 0
    task_status: str = ""
    task_error: bool = False
    fit_concerns: list = field(default_factory=list)  # why the input may not fit the task: Run anyway or Stop
    fit_task: str = ""  # the task those concerns are about


class WorkflowUI:
    run_clicked = Signal(str, str, str, object)  # task, device, the typed load path, its series
    run_anyway_clicked = Signal(str, str, str, object)  # the same, after the input-fit concerns were read
    stop_clicked = Signal()

    def __init__(self, server):
        self.typed = FlatState(server.state, WorkflowState)

    def build(self, load_path_name, load_series_name, busy_name):
        n = self.typed.name
        heading("Workflows")
        with html.Div(v_if=(n.workflows_available,)):
            v3.VSelect(v_model=(n.task,), items=(n.task_items,), id="spineai-task-select", label="Task",
                       density="compact", hide_details=True)
            with html.Div(classes="d-flex align-center mt-2", style="gap: 8px"):
                v3.VSelect(v_model=(n.device,), items=("device_items", DEVICE_ITEMS), id="spineai-device-select",
                           label="Device", density="compact", hide_details=True, style="max-width: 140px")
                v3.VBtn("Run", id="spineai-run-button", color="primary", loading=(n.task_running,),
                        disabled=(f"{n.task_running} || {busy_name}",),
                        click=(self.run_clicked, f"[{n.task}, {n.device}, {load_path_name}, {load_series_name}]"))
            v3.VCheckbox(v_model=(n.dicom,), id="spineai-dicom-outputs", density="compact", hide_details=True,
                         label="DICOM outputs (SEG, SR, captures) for PACS",
                         title="Adds a dicom/ folder to the run: needs a DICOM input; it carries the patient's "
                               "identifiers (it goes back to the same record)")
            # The input may not fit the task: say why, and let the user go on or stop.
            run_args = f"[{n.fit_task}, {n.device}, {load_path_name}, {load_series_name}]"
            with html.Div(v_if=(f"{n.fit_concerns}.length",), id="spineai-fit", classes="mt-2 pa-2",
                          style="background: #4e342e; border-left: 4px solid #ffb300; border-radius: 4px;"
                                " white-space: normal; color: #ffe0b2; font-size: 12px"):
                html.Div(f"Does this input fit {{{{ {n.fit_task} }}}}?", classes="font-weight-bold")
                html.Div("{{ c }}", v_for=f"(c, i) in {n.fit_concerns}", key="i", classes="spineai-fit-concern mt-1")
                with html.Div(classes="d-flex mt-2", style="gap: 8px"):
                    v3.VBtn("Run anyway", id="spineai-fit-go", size="small", color="warning",
                            click=(self.run_anyway_clicked, run_args))
                    v3.VBtn("Stop", id="spineai-fit-stop", size="small", variant="tonal", click=self.stop_clicked)
            v3.VProgressLinear(model_value=(n.task_progress,), id="spineai-task-progress", color="primary", height=6,
                               rounded=True, classes="mt-2")
        message_line(n.task_status, n.task_error, "spineai-task-status")
