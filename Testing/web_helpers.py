"""Playwright helpers for the web app's browser tests (shared by every browser test).

Server and browser plumbing lives in ``SpineAILib.web.snapshot`` (the demo uses it
too): ``WebServer`` runs ``python -m SpineAILib.web.app`` on a free port in its
own session with its output in a log file (``server.url`` is the address it printed, with
this launch's token: a page opened anywhere else is refused); ``browser_page`` opens Debian's
Chromium through Playwright. Views are ``<img>`` elements: a view is "shown" once
its image has a real size, a new frame is a changed ``src``. This module adds what
tests need on top: pixels of a view, panel text, waiting for a new frame.

Typical use::

    with WebServer(input_path, log_path=tmp_path / "server.log") as server, browser_page(server.url) as page:
        wait_for_views(page)
        rgb = view_pixels(page, AXIAL)
"""

import contextlib
import io
from pathlib import Path

import numpy as np
from SpineAILib.web.snapshot import (  # noqa: F401 (re-exported for tests)
    ALL_VIEWS,
    AXIAL,
    CHROMIUM,
    CHROMIUM_ARGS,
    CORONAL,
    SAGITTAL,
    THREED,
    WebServer,
    browser_page,
    free_port,
    img_src,
    missing_browser_reason,
    VIEWPORT,
    view_img_selector,
    wait_for_views,
    wait_until_frame_settles,
)


def wait_for_new_frame(page, tag, old_src, timeout_ms=30000):
    """Until view ``tag`` shows a frame other than ``old_src``; returns the new src."""
    page.wait_for_function(
        """([s, old]) => { const img = document.querySelector(s);
               return img && img.src !== old && img.complete && img.naturalWidth > 50; }""",
        arg=[view_img_selector(tag), old_src],
        timeout=timeout_ms,
    )
    return img_src(page, tag)


def view_pixels(page, tag, save_to=None):
    """Screenshot of view ``tag``'s image as an RGB uint8 array (optionally saved as PNG)."""
    from PIL import Image

    png = page.locator(view_img_selector(tag)).screenshot()
    if save_to:
        Path(save_to).write_bytes(png)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def coloured_fraction(rgb, min_spread=60):
    """Fraction of pixels whose channels differ by more than ``min_spread`` (clearly not grey)."""
    rgb = rgb.astype(np.int16)
    return float(np.mean(rgb.max(axis=2) - rgb.min(axis=2) > min_spread))


def set_text_field(page, element_id, text):
    page.fill(f"#{element_id}", text)


def text_of(page, element_id):
    return page.inner_text(f"#{element_id}")


def wait_for_text(page, element_id, predicate_js, timeout_ms=60000):
    """Until ``predicate_js`` (a JS expression over ``t``, the element's text) is true; the text."""
    page.wait_for_function(
        f"""(id) => {{ const el = document.getElementById(id);
                      if (!el) return false; const t = el.innerText || ''; return {predicate_js}; }}""",
        arg=element_id,
        timeout=timeout_ms,
    )
    return text_of(page, element_id)


@contextlib.contextmanager
def browser_tabs(url, n=2, viewport=VIEWPORT, timeout_ms=60000):
    """``n`` tabs of one Chromium window (one profile: the token's cookie is shared). The first
    opens ``url`` (the address the app printed, with its token); the others open the same
    address without the token, as a person opens a second tab."""
    from urllib.parse import urlsplit

    from playwright.sync_api import sync_playwright

    parts = urlsplit(url)
    plain = f"{parts.scheme}://{parts.netloc}/"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=viewport)
            context.set_default_timeout(timeout_ms)
            pages = []
            for i in range(n):
                page = context.new_page()
                page.goto(url if i == 0 else plain)
                pages.append(page)
            yield pages
        finally:
            browser.close()


def slice_slider(page, tag):
    """(offset, lowest, highest) in mm of view ``tag``'s slice slider, as its thumb shows it: the
    slice the view shows, as trame-slicer reads it from the server's slice view."""
    thumb = page.locator(f"div:has(> .spineai-view-{tag}) .slice-slider-gutter .v-slider-thumb").first
    return tuple(float(thumb.get_attribute(a)) for a in ("aria-valuenow", "aria-valuemin", "aria-valuemax"))
