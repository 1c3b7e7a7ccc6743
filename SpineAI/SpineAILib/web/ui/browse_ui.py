"""The Files section (above Load): a browser of the server's folders under the data roots given at
start, a DICOM folder's series (modality, description, orientation, slices) each with Load, a
whole study at once, upload from the browser; and the Workspace section (runs listed by input,
cases), kept across restarts."""

from dataclasses import dataclass, field

from trame.widgets import html
from trame.widgets import vuetify3 as v3
from undo_stack import Signal

from SpineAILib.web.typed_state import FlatState
from SpineAILib.web.ui.panel_ui import heading, message_line


@dataclass
class BrowseState:
    browse_listing: dict = field(default_factory=dict)  # browse.Roots.listing() of the folder shown
    browse_message: str = ""
    browse_error: bool = False
    upload_files: object = None  # the file input's files (content included) until they are written
    workspace_folder: str = ""
    workspace_runs: list = field(default_factory=list)  # workspace.runs_by_input()
    workspace_cases: list = field(default_factory=list)  # workspace.case_folders()


class BrowseUI:
    folder_clicked = Signal(str)  # open this folder
    file_clicked = Signal(str)  # load this file
    series_clicked = Signal(str, int)  # folder, series number: load it
    study_clicked = Signal(str)  # folder: load the whole study (lumbar-mri)
    run_clicked = Signal(str)  # a workspace run folder: load its results
    case_clicked = Signal(str)  # a workspace case folder: open it

    def __init__(self, server):
        self.typed = FlatState(server.state, BrowseState)

    def build(self):
        n = self.typed.name
        b = n.browse_listing
        heading("Files on the server")
        with html.Div(id="spineai-browser", classes="text-caption"):
            with html.Div(classes="d-flex align-center", style="gap: 4px"):
                v3.VBtn(icon="mdi-arrow-up", size="x-small", variant="text", id="spineai-browse-up",
                        disabled=(f"!{b}.parent",), title="the folder above", click=(self.folder_clicked, f"[{b}.parent]"))
                html.Div(f"{{{{ {b}.path }}}}", id="spineai-browse-path", title=(f"{b}.path",),
                         style="white-space: nowrap; overflow: hidden; text-overflow: ellipsis; flex: 1")
                v3.VBtn(icon="mdi-home-outline", size="x-small", variant="text", title="the first data root",
                        click=(self.folder_clicked, "['']"))
            with html.Div(id="spineai-browse-list", style="max-height: 180px; overflow-y: auto"):
                with html.Div(v_for=f"f in {b}.folders", key="f.path", classes="spineai-browse-folder",
                              style="cursor: pointer", title=("f.path",), click=(self.folder_clicked, "[f.path]")):
                    v3.VIcon("mdi-folder-outline", size="x-small", classes="mr-1")
                    html.Span("{{ f.name }}")
                with html.Div(v_for=f"f in {b}.files", key="f.path", classes="spineai-browse-file",
                              style="cursor: pointer", title=("'load ' + f.path",), click=(self.file_clicked, "[f.path]")):
                    v3.VIcon("mdi-file-outline", size="x-small", classes="mr-1")
                    html.Span("{{ f.name }}")
                html.Div(f"{{{{ {b}.more }}}} more not listed", v_show=(f"{b}.more",), classes="text-medium-emphasis")
            # A DICOM folder (or a study of series folders): its series, each loadable; a study at once.
            with html.Div(v_if=(f"{b}.series && {b}.series.length",), id="spineai-browse-series", classes="mt-1"):
                html.Div(f"DICOM: {{{{ {b}.series.length }}}} series", classes="font-weight-bold")
                with html.Div(v_for=f"s in {b}.series", key="s.index", classes="d-flex align-center spineai-browse-series-row",
                              style="gap: 4px"):
                    html.Span("{{ s.index }}) {{ s.description }} — {{ s.modality }} {{ s.orientation }}, "
                              "{{ s.slices }} slices", style="flex: 1")
                    v3.VBtn("Load", size="x-small", variant="tonal", classes="spineai-browse-series-load",
                            click=(self.series_clicked, f"[{b}.path, s.index]"))
                v3.VBtn("Load whole study", v_if=(f"{b}.study",), id="spineai-browse-study", size="x-small",
                        color="primary", classes="mt-1", title="every series at once: lumbar-mri grades what each shows",
                        click=(self.study_clicked, f"[{b}.path]"))
            v3.VFileInput(v_model=(n.upload_files,), id="spineai-upload", label="Upload files to the workspace",
                          multiple=True, density="compact", hide_details=True, classes="mt-2", show_size=True,
                          prepend_icon="mdi-upload")
            message_line(n.browse_message, n.browse_error, "spineai-browse-message")

    def build_workspace(self):
        n = self.typed.name
        heading("Workspace")
        with html.Div(id="spineai-workspace", classes="text-caption"):
            html.Div(f"{{{{ {n.workspace_folder} }}}}", classes="text-medium-emphasis", title=(n.workspace_folder,),
                     style="white-space: nowrap; overflow: hidden; text-overflow: ellipsis")
            html.Div("no runs yet", v_show=(f"!{n.workspace_runs}.length",), classes="text-medium-emphasis")
            with html.Div(v_for=f"g in {n.workspace_runs}", key="g.input", classes="mt-1 spineai-workspace-input"):
                html.Div("{{ g.name }}", classes="font-weight-bold", title=("g.input",))
                html.Div("{{ r.task }} · {{ r.when }}{{ r.warnings ? ' · ' + r.warnings + ' warning(s)' : '' }}",
                         v_for="r in g.runs", key="r.path", classes="spineai-workspace-run ml-2",
                         style="cursor: pointer; text-decoration: underline", title=("r.message || r.path",),
                         click=(self.run_clicked, "[r.path]"))
            with html.Div(v_if=(f"{n.workspace_cases}.length",), classes="mt-1"):
                html.Div("Cases", classes="font-weight-bold")
                html.Div("{{ c.name }}{{ c.task ? ' · ' + c.task : '' }}", v_for=f"c in {n.workspace_cases}",
                         key="c.path", classes="spineai-workspace-case ml-2",
                         style="cursor: pointer; text-decoration: underline", title=("c.path",),
                         click=(self.case_clicked, "[c.path]"))
