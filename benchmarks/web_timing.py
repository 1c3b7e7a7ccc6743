"""What the two web benchmarks wait for in the page: a view lit or dark, the 'loaded' message, a cleared scene.

A view's <img> is drawn on a canvas and its pixels counted, so "first image" means what a person
sees, not what the server says it sent.
"""

import time

# True once ``f`` of the view's pixels are brighter than ``v`` (the view's <img> drawn on a canvas).
LIT = """([s, f, v]) => { const img = document.querySelector(s); if (!img || !img.complete || !img.naturalWidth) return false;
    const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext('2d'); g.drawImage(img, 0, 0); const d = g.getImageData(0, 0, c.width, c.height).data;
    let lit = 0; for (let i = 0; i < d.length; i += 4) if (Math.max(d[i], d[i + 1], d[i + 2]) > v) lit++;
    return lit > d.length / 4 * f; }"""
DARK = LIT.replace("return lit > d.length / 4 * f;", "return lit < d.length / 4 * f;").replace(
    "if (!img || !img.complete || !img.naturalWidth) return false;", "if (!img || !img.complete) return true;")
LOADED = "() => (document.getElementById('spineai-load-message') || {}).innerText.startsWith('loaded')"


def until_lit(page, selector, t0, fraction, timeout_ms=180000):
    """(seconds from ``t0`` until the panel says 'loaded' — the server has read the file and put it
    on the views —, seconds until ``fraction`` of the view's pixels are brighter than 8)."""
    page.wait_for_function(LOADED, timeout=timeout_ms, polling=50)
    said = time.perf_counter() - t0
    page.wait_for_function(LIT, arg=[selector, fraction, 8], timeout=timeout_ms, polling=50)
    return said, time.perf_counter() - t0


def clear_scene(page, selector):
    """Clear (not 'Clear measurements'), then wait until the view is dark again."""
    page.click("#spineai-panel button:has-text('Clear'):not(#spineai-measure-clear)")
    page.wait_for_function("() => (document.getElementById('spineai-load-message') || {}).innerText === 'scene cleared'")
    page.wait_for_function(DARK, arg=[selector, 0.01, 8], timeout=30000)
