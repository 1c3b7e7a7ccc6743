"""Run the web app in a subprocess and look at it with Chromium (demo screenshot, browser tests).

The app prints its address with this launch's token (``web.access``); ``WebServer.url`` is
that address, so a page opened on it is let in. Views are ``<img>`` elements streamed over the
websocket: Chromium's own
``--screenshot`` catches only trame's loading spinner, so Playwright waits until
each view's image has a real size. Debian's Chromium is used through the
``playwright`` Python package (no ``playwright install``).
"""

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from SpineAILib.errors import SpineAIError

CHROMIUM = Path(os.environ.get("SPINEAI_CHROMIUM", "/usr/bin/chromium"))
# Flags verified on headless servers without GPU (no sandbox, no network chatter).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 850}
READY_LINE = "SpineAI web app listening on"  # printed by app.serve() once the port is open, then the address

# View singleton tags (trame-slicer's defaults); each view has a marker div spineai-view-<tag>.
AXIAL, SAGITTAL, CORONAL, THREED = "Red", "Yellow", "Green", "ThreeD"
ALL_VIEWS = (AXIAL, SAGITTAL, CORONAL, THREED)


def missing_browser_reason():
    """Why Chromium cannot be driven here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (install Debian's chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed"
    return None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebServer:
    """``python -m SpineAILib.web.app ARGS --port P`` in its own session, output in a log file."""

    def __init__(self, *args, port=None, log_path=None, env=None):
        self.port = port or free_port()
        self.args = [str(a) for a in args]
        if log_path is None:
            log_path = Path(tempfile.gettempdir()) / f"spineai-web-{self.port}.log"
        self.log_path = Path(log_path)
        self.env = {**os.environ, **(env or {})}
        if not self.env.get("DISPLAY"):
            self.env.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
        self.process = None
        self._log = None

    @property
    def base_url(self):
        """The address without the token (a page opened on it is refused)."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def url(self):
        """The address the app printed at start, with its token: what a person opens."""
        for line in self.log().splitlines():
            if line.startswith(READY_LINE):
                return line[len(READY_LINE):].strip()
        raise SpineAIError(f"the web app printed no address yet; see {self.log_path}")

    @property
    def token(self):
        from urllib.parse import parse_qs, urlsplit

        return parse_qs(urlsplit(self.url).query)["token"][0]

    def start(self, timeout=90):
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "SpineAILib.web.app", *self.args, "--port", str(self.port)],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the caller's terminal does not reach it; stop() does
        )
        try:
            self.wait_ready(timeout)
        except Exception:
            self.stop()
            raise
        return self

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout):
        """Until the app prints its ready line and accepts connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SpineAIError(f"the web app exited with code {self.process.returncode}; see {self.log_path}")
            if READY_LINE in self.log():
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            time.sleep(0.2)
        raise SpineAIError(f"the web app did not answer within {timeout} s; see {self.log_path}")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@contextlib.contextmanager
def browser_page(url, viewport=VIEWPORT, timeout_ms=60000):
    """A Chromium page opened on ``url``; the browser is closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=viewport)
            page.set_default_timeout(timeout_ms)
            page.goto(url)
            yield page
        finally:
            browser.close()


def view_img_selector(tag):
    """CSS selector of the <img> of view ``tag`` (its marker div sits beside the remote area)."""
    return f"div:has(> .spineai-view-{tag}) img.image-display-area"


def wait_for_views(page, tags=ALL_VIEWS, min_width=50, timeout_ms=60000):
    """Until every listed view shows a real image (naturalWidth > min_width)."""
    page.wait_for_function(
        """([selectors, minWidth]) => selectors.every(s => {
               const img = document.querySelector(s);
               return img && img.complete && img.naturalWidth > minWidth;
           })""",
        arg=[[view_img_selector(t) for t in tags], min_width],
        timeout=timeout_ms,
    )


def img_src(page, tag):
    return page.eval_on_selector(view_img_selector(tag), "img => img.src")


def wait_until_frame_settles(page, tag, quiet_s=1.0, timeout_s=30.0):
    """Until view ``tag`` has shown the same frame for ``quiet_s`` (renders come in bursts)."""
    deadline = time.monotonic() + timeout_s
    src, since = img_src(page, tag), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = img_src(page, tag)
        if now != src:
            src, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
    return src


def snapshot_web_app(input_path, png_path, views=ALL_VIEWS, timeout=120):
    """Open ``input_path`` in the web app, screenshot the page to ``png_path``; the Path.

    None when Chromium or playwright is missing here; SpineAIError when the app does
    not come up, its views stay empty or it cannot load the input (the screenshot,
    showing the panel's error line, is written all the same).
    """
    if missing_browser_reason():
        return None
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with WebServer(input_path) as server:
        try:
            with browser_page(server.url, timeout_ms=timeout * 1000) as page:
                wait_for_views(page, views, timeout_ms=timeout * 1000)
                wait_until_frame_settles(page, views[0])
                page.screenshot(path=str(png_path))
                message = page.locator("#spineai-load-message")
                if "text-error" in (message.get_attribute("class") or ""):
                    raise SpineAIError(f"the web app could not load {input_path}: {message.inner_text()}")
        except Exception as error:
            if isinstance(error, SpineAIError):
                raise
            reason = " ".join(str(error).split()[:30])
            raise SpineAIError(f"web app screenshot failed: {type(error).__name__}: {reason}") from None
    return png_path
