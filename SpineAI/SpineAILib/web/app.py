"""SpineAI in the browser: trame-slicer views plus a side panel.

``serve()`` is what ``spineai web`` calls; ``python -m SpineAILib.web.app INPUT --port P``
does the same. This module only puts the parts together, as trame-slicer's apps do: each
panel section is a layout in ``web/ui/*_ui.py`` (its dataclass state, its signals) and a
behaviour in ``web/logic/*_logic.py`` (connected to those signals); the logics call
``SpineAILib.io`` (reading), ``SpineAILib.scene`` (MRML nodes), ``SpineAILib.tasks``
(workflows) and ``SpineAILib.annotation`` (cases). ``web/access.py`` keeps other sites and
anyone without this launch's token out.

Threads: MRML and VTK are touched only on the server's asyncio loop; file reading and
workflows run in worker threads and hand their results back to the loop.
"""

import argparse
import os
import sys
import webbrowser
from pathlib import Path

from trame.app import TrameApp
from trame_slicer import module as trame_slicer_module
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import RemoteSliceViewFactory, RemoteThreeDViewFactory

from SpineAILib.errors import SpineAIError
from SpineAILib.scene.context import SceneContext
from SpineAILib.web.access import AccessGuard, host_warning, is_loopback, new_token  # noqa: F401 (host_warning: API)
from SpineAILib.web.logic.annotate_logic import AnnotateLogic
from SpineAILib.web.logic.browse_logic import BrowseLogic
from SpineAILib.web.logic.cine_logic import CineLogic
from SpineAILib.web.logic.dataset_logic import DatasetLogic
from SpineAILib.web.logic.load_logic import LoadLogic
from SpineAILib.web.logic.review_logic import ReviewLogic
from SpineAILib.web.logic.views_logic import ViewsLogic
from SpineAILib.web.logic.workflow_logic import WorkflowLogic
from SpineAILib.web.snapshot import READY_LINE  # the start-up line WebServer waits for
from SpineAILib.web.typed_state import FlatState
from SpineAILib.web.ui.annotate_ui import AnnotateUI
from SpineAILib.web.ui.browse_ui import BrowseUI
from SpineAILib.web.ui.cine_ui import CineUI
from SpineAILib.web.ui.dataset_ui import DatasetUI
from SpineAILib.web.ui.load_ui import LoadUI
from SpineAILib.web.ui.panel_ui import PageState, build_page
from SpineAILib.web.ui.results_ui import ResultsUI
from SpineAILib.web.ui.views_ui import ViewsUI, slice_view_ui, threed_view_ui
from SpineAILib.web.ui.workflow_ui import WorkflowUI
from SpineAILib.workspace import Workspace

ORIGINS_ENV = "SPINEAI_WEB_ORIGINS"  # more origins allowed to connect, comma-separated
THREED_QUALITY = 90  # JPEG quality of every 3-D frame: trame-rca's still quality, no re-render for it


class SpineAIWebApp(TrameApp):
    """The app: one SlicerApp and scene, the panel's sections (UI + logic), their connections."""

    def __init__(self, server=None, out_dir=None, workspace=None, data_roots=None):
        """``workspace``: the folder that keeps runs, cases and uploads (default ~/SpineAI-workspace,
        or $SPINEAI_WORKSPACE); ``out_dir``: runs (and cases) there instead; ``data_roots``: the folders
        the file browser shows (default: the user's home)."""
        super().__init__(server)
        self.server.enable_module(trame_slicer_module)
        self.slicer_app = SlicerApp()
        self.scene_ctx = SceneContext.from_trame_app(self.slicer_app)
        self.workspace = Workspace(workspace)
        self.out_dir = Path(out_dir) if out_dir else self.workspace.runs  # where Run writes each run's folder
        FlatState(self.state, PageState)

        # trame-slicer's register_rca_factories, but the 3-D view's frames are sent at one quality:
        # each volume-rendered frame takes about a second in software OpenGL, and the sharper copy
        # the slice views get a moment later (a second render) would hold up every view as long.
        for factory in (RemoteSliceViewFactory(self.server, blur_fps=10, populate_view_ui_f=slice_view_ui),
                        RemoteThreeDViewFactory(self.server, blur_fps=10, interactive_quality=THREED_QUALITY,
                                                populate_view_ui_f=threed_view_ui)):
            self.slicer_app.view_manager.register_factory(factory)
        layout_manager = LayoutManager(self.slicer_app.scene, self.slicer_app.view_manager, self.server)

        # Behaviour: each logic gets the logics it works with (lower ones first).
        self.views = ViewsLogic(self.server, self.slicer_app, self.scene_ctx, layout_manager)
        self.cine = CineLogic(self.server, self.views)
        self.review = ReviewLogic(self.server, self.views, self.cine)
        self.loader = LoadLogic(self.server, self.views, self.cine, self.review)
        self.workflow = WorkflowLogic(self.server, self.loader, self.out_dir)
        self.annotate = AnnotateLogic(self.server, self.views, self.cine, self.loader, self.workflow,
                                      Path(out_dir) if out_dir else self.workspace.folder)  # cases/ in it
        self.browse = BrowseLogic(self.server, self.loader, data_roots or [Path.home()], self.workspace, self.out_dir)
        self.dataset = DatasetLogic(self.server, self.annotate, self.loader)

        # Layout: each section's UI, its signals connected to its logic.
        self.ui_parts = {"load": LoadUI(self.server), "views": ViewsUI(self.server), "cine": CineUI(self.server),
                         "annotate": AnnotateUI(self.server), "dataset": DatasetUI(self.server),
                         "workflow": WorkflowUI(self.server), "browse": BrowseUI(self.server),
                         "results": ResultsUI(self.server)}
        parts = self.ui_parts
        for logic, ui in ((self.loader, parts["load"]), (self.views, parts["views"]), (self.cine, parts["cine"]),
                          (self.review, parts["cine"]), (self.annotate, parts["annotate"]),
                          (self.dataset, parts["dataset"]), (self.workflow, parts["workflow"]),
                          (self.browse, parts["browse"])):
            logic.set_ui(ui)
        parts["views"].clear_clicked.connect(self.loader.clear)
        parts["views"].row_clicked.connect(self.loader.jump_to_row)
        parts["results"].vertebra_clicked.connect(self.loader.centre_on_vertebra)
        self.ui = self._build_page(layout_manager)

    def _build_page(self, layout_manager):
        p = self.ui_parts
        load, views, workflow = p["load"].typed.name, p["views"].typed.name, p["workflow"].typed.name
        sections = [
            p["browse"].build,
            p["load"].build,
            lambda: p["views"].build(f"{load.busy} || {workflow.task_running}"),
            lambda: p["cine"].build(views.cine_visible),
            p["annotate"].build,
            p["dataset"].build,
            lambda: p["workflow"].build(load.load_path, load.load_series, load.busy),
            p["results"].build,
            p["load"].build_results,
            p["browse"].build_workspace,
            p["views"].build_tables,
        ]
        return build_page(self.server, layout_manager, sections)

    # -- what scripts and tests call (the panel's buttons do the same) ----------------------------

    @property
    def _tasks(self):
        """The tasks module Run calls (``run_task_isolated``); None when workflows are not installed."""
        return self.workflow.tasks

    @_tasks.setter
    def _tasks(self, tasks):
        self.workflow.tasks = tasks

    def load_now(self, path, load_as="auto"):
        """Load ``path`` now (the command line's INPUT); a failure goes to the panel's Load line."""
        self.loader.load_now(path, load_as)

    async def load(self, path, load_as="auto", series=None):
        await self.loader.load(path, load_as, series)

    async def run(self, task, device="auto", load_path="", series=None, checked=True):
        """Run ``task`` (a script decides for itself: no input-fit question unless ``checked=False``)."""
        await self.workflow.run(task, device, load_path, series, checked=checked)


# -- entry points -----------------------------------------------------------------


def extra_origins():
    return [o for o in os.environ.get(ORIGINS_ENV, "").split(",") if o.strip()]


def serve(input_path=None, host="127.0.0.1", port=8080, open_browser=False, out_dir=None, workspace=None,
          data_roots=None):
    """Start the web app (blocks until stopped). ``input_path`` is loaded at startup.

    Listens on 127.0.0.1 unless ``host`` says otherwise (any other host gets a warning on
    stderr). Prints the address to open, with this launch's token (``web.access``).
    ``out_dir``: where Run writes each run's folder (default: ``runs/`` of the workspace).
    ``workspace``: the folder that keeps runs, cases and uploads across restarts (default
    ~/SpineAI-workspace); ``data_roots``: the folders the file browser shows (default: home).
    """
    warning = host_warning(host, port)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    if not os.environ.get("DISPLAY"):
        # No X server: go straight to EGL offscreen instead of failing over from X.
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    # trame parses sys.argv on start; give it no arguments so the caller's own
    # command line (e.g. `spineai web INPUT --host ...`) is not read a second time.
    os.environ["TRAME_ARGS"] = ""
    app = SpineAIWebApp(out_dir=out_dir, workspace=workspace, data_roots=data_roots)
    if input_path:
        app.load_now(input_path)
    guard = AccessGuard(new_token(), host, extra_origins())
    app.server.controller.on_server_bind.add(lambda ws_server: guard.install(ws_server, app.server.protocol))

    def announce(**_):
        url = guard.url(host, app.server.port)
        print(f"{READY_LINE} {url}", flush=True)
        print(f"open {url} in a browser (the token is new at every start)", flush=True)
        if open_browser:
            webbrowser.open(url)

    app.server.controller.on_server_ready.add(announce)
    try:
        # timeout=0: keep serving when no browser is connected (wslink would stop after 300 s).
        app.server.start(host=host, port=port, open_browser=False, timeout=0, show_connection_info=False)
    except OSError as error:  # port taken, address not on this machine, ...
        raise SpineAIError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def build_parser():
    parser = argparse.ArgumentParser(
        prog="spineai web", description="SpineAI web app: 3D Slicer views and the workflows in a browser"
    )
    parser.add_argument("input", nargs="?", help="file or DICOM folder to load at startup")
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--out", dest="out_dir", help="folder for workflow results (default: WORKSPACE/runs)")
    parser.add_argument("--workspace", help="folder that keeps runs, cases and uploads across restarts "
                        "(default ~/SpineAI-workspace)")
    parser.add_argument("--data-root", dest="data_roots", action="append", metavar="DIR",
                        help="a folder the file browser shows (repeatable; default: your home folder); "
                             "nothing outside these is listed")
    parser.add_argument("--open", dest="open_browser", action="store_true", help="open a browser tab")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        serve(args.input, host=args.host, port=args.port, open_browser=args.open_browser, out_dir=args.out_dir,
              workspace=args.workspace, data_roots=args.data_roots)
    except SpineAIError as error:
        print(f"spineai web: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
