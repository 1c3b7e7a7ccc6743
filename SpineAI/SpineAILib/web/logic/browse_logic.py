"""The Files and Workspace sections: list a server folder under the data roots (``SpineAILib.browse``,
which refuses anything outside them), load a file, a DICOM series or a whole study from it, write
browser uploads into the workspace (``SpineAILib.workspace``) and load them, list the workspace's
runs by input and its cases (opened through the Load logic)."""

import asyncio
import time

from SpineAILib.browse import Roots
from SpineAILib.web.logic.base_logic import BaseLogic, log_unexpected, one_line
from SpineAILib.web.ui.browse_ui import BrowseState
from SpineAILib.workspace import MAX_UPLOAD_BYTES, Workspace


class BrowseLogic(BaseLogic[BrowseState]):
    """``loader``: the Load logic; ``roots``: the data roots; ``workspace``: a Workspace;
    ``runs_dir``: where this server's runs go (the workspace's ``runs/`` unless ``--out``)."""

    def __init__(self, server, loader, roots, workspace, runs_dir=None, max_upload=MAX_UPLOAD_BYTES):
        super().__init__(server, BrowseState)
        self.loader = loader
        self.roots = Roots(roots)
        self.workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        self.runs_dir = runs_dir or self.workspace.runs
        self.max_upload = max_upload
        self.typed.update(workspace_folder=str(self.workspace.folder))
        self.open_folder("")
        self.refresh_workspace()
        self.bind_changes({self.name.upload_files: self._on_upload})
        self.state.change("results_path", "annot_open")(lambda **_: self.refresh_workspace(push=True))

    def set_ui(self, ui):
        ui.folder_clicked.connect(self.open_folder)
        ui.file_clicked.connect(self.load_file)
        ui.series_clicked.connect(self.load_series)
        ui.study_clicked.connect(self.load_study)
        ui.run_clicked.connect(self.load_run)
        ui.case_clicked.connect(self.open_case)

    def _say(self, message, error=False):
        self.push(browse_message=message, browse_error=error)

    def open_folder(self, path):
        try:
            listing = self.roots.listing(path)
        except Exception as error:
            log_unexpected(error, "browsing")
            return self._say(one_line(error), error=True)
        self.push(browse_listing=listing, browse_message="", browse_error=False)

    def _checked(self, path):
        try:
            return str(self.roots.check(path))
        except Exception as error:
            self._say(one_line(error), error=True)
            return None

    async def load_file(self, path):
        real = self._checked(path)
        if real:
            await self.loader.load_typed(real)

    async def load_series(self, folder, series):
        real = self._checked(folder)
        if real:
            await self.loader.load_series(real, int(series))

    async def load_study(self, folder):
        real = self._checked(folder)
        if real:
            await self.loader.load_study(real)

    async def load_run(self, folder):
        self.loader.data.results_path = folder
        await self.loader.load_results(folder)

    async def open_case(self, folder):
        await self.loader.load_typed(folder)

    def refresh_workspace(self, push=False):
        values = {"workspace_runs": self.workspace.runs_by_input(self.runs_dir),
                  "workspace_cases": self.workspace.case_folders(self.case_dir())}
        self.push(**values) if push else self.typed.update(**values)

    def case_dir(self):
        return self.runs_dir.parent / "cases" if self.runs_dir != self.workspace.runs else self.workspace.cases

    # -- uploads ---------------------------------------------------------------------------------

    async def _on_upload(self, files):
        if not files:
            return
        files = files if isinstance(files, list) else [files]
        self.push(upload_files=None, browse_message=f"writing {len(files)} file(s) into the workspace …",
                  browse_error=False)
        loop = asyncio.get_running_loop()
        try:
            written = await loop.run_in_executor(None, self._write_uploads, files)
        except Exception as error:
            log_unexpected(error, "upload")
            return self._say(one_line(error), error=True)
        target = written[0] if len(written) == 1 else written[0].parent  # several files: a DICOM series folder
        self._say(f"uploaded {len(written)} file(s) to {target}")
        await self.loader.load_typed(str(target))

    def _write_uploads(self, files):
        from trame.app.file_upload import ClientFile

        total = sum(int(f.get("size") or 0) for f in files if isinstance(f, dict))
        if total > self.max_upload:
            raise ValueError(f"{total / 1e6:.0f} MB is more than the {self.max_upload / 1e6:.0f} MB an upload may be")
        batch = time.strftime("%Y%m%d-%H%M%S") if len(files) > 1 else None
        written = []
        for item in files:
            f = ClientFile(item)
            written.append(self.workspace.save_upload(f.name, f.content, batch=batch, max_bytes=self.max_upload))
        return written
