"""The views' basics in Debian's Chromium (issue 14, items 1, 4, 6): window/level by drag and by
preset with its readout in each view, the views' names, orientation letters and slice, linked
crosshairs, rulers, angles and a Cobb angle on a synthetic curve, level boxes out of the way, an
MRI's 3-D view without a block, and a page load without a failed request.

One server for the whole scenario (start-up and first frames cost ≈ 10 s on two cores): the
real CT first, then a synthetic coronal 'curve' and the real lumbar MRI loaded through the panel.
Every check reads what a user sees: the views' pixels and the text on the page.
"""

import base64
import io
import math
import re
import time

import numpy as np
import pytest
from web_helpers import (
    AXIAL,
    CORONAL,
    SAGITTAL,
    THREED,
    WebServer,
    browser_page,
    coloured_fraction,
    img_src,
    missing_browser_reason,
    set_text_field,
    text_of,
    view_img_selector,
    view_pixels,
    wait_for_new_frame,
    wait_for_text,
    wait_for_views,
    wait_until_frame_settles,
)

UPPER_DEG, LOWER_DEG = 12.0, -18.0  # the synthetic curve's endplate tilts: a 30 degree Cobb angle


def _synthetic_curve(path):
    """A coronal slab (1 mm voxels) with two bright tilted bars: the end vertebrae's endplates."""
    import nibabel as nib

    nx, ny, nz = 160, 6, 160
    data = np.zeros((nx, ny, nz), np.int16)
    x, z = np.meshgrid(np.arange(nx), np.arange(nz), indexing="ij")
    for centre_z, degrees in ((112, UPPER_DEG), (48, LOWER_DEG)):
        t = math.radians(degrees)
        along = (x - 80) * math.cos(t) + (z - centre_z) * math.sin(t)
        across = -(x - 80) * math.sin(t) + (z - centre_z) * math.cos(t)
        bar = (np.abs(along) < 45) & (np.abs(across) < 2.5)
        data[bar[:, None, :].repeat(ny, axis=1)] = 1000
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def _image_pixels(page, tag):
    """The view's own image (what the server rendered, without the page's text over it), RGB."""
    from PIL import Image

    data_url = page.eval_on_selector(view_img_selector(tag), """img => {
        const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        c.getContext('2d').drawImage(img, 0, 0); return c.toDataURL('image/png'); }""")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB"))


def _view_text(page, tag, key):
    return page.inner_text(f".spineai-view-text-{tag} .spineai-vt-{key}").strip()


def _box(page, tag):
    return page.locator(view_img_selector(tag)).bounding_box()


def _click_at(page, tag, fx, fy):
    b = _box(page, tag)
    page.mouse.click(b["x"] + b["width"] * fx, b["y"] + b["height"] * fy)


def _wl(text):
    m = re.search(r"W (-?\d+)\s+L (-?\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _tool(page, tool, hint):
    """Choose a mouse tool; returns once the panel says what it wants (the server has it)."""
    page.click(f"#spineai-tool-{tool}")
    wait_for_text(page, "spineai-measure-hint", f"t.includes({hint!r})")


def _measurement(page, name, timeout_ms=30000):
    text = wait_for_text(page, "spineai-measurements", f"t.includes('{name}:')", timeout_ms=timeout_ms)
    m = re.search(re.escape(name) + r":\s*([\d.]+)", text)
    return float(m.group(1))


def _progress(page, predicate_js, timeout_ms=60000):
    """The line under the tool's hint, once ``predicate_js`` (over ``t``) holds: what the last click did."""
    return wait_for_text(page, "spineai-measure-progress", predicate_js, timeout_ms=timeout_ms).strip()


def _place(page, tag, points, name, needed, first=1):
    """Click ``points`` (page x, y) one at a time on view ``tag``, each once the one before it is on
    the server (the panel counts the points of ``name``: a click is never sent into a busy queue
    unconfirmed, and one that did not register fails here, naming it)."""
    for n, (x, y) in enumerate(points, start=first):
        page.mouse.click(x, y)
        _progress(page, f"t === {f'{name}: {n} of {needed} points'!r}")


def _place_fractions(page, tag, fractions, name, needed):
    b = _box(page, tag)
    _place(page, tag, [(b["x"] + b["width"] * fx, b["y"] + b["height"] * fy) for fx, fy in fractions], name, needed)


def _ras(text):
    """RAS of '(L 12.3, A 4.0, S 100.2)' (the crosshair's position as the panel gives it)."""
    m = re.search(r"\(([RL]) (-?[\d.]+), ([AP]) (-?[\d.]+), ([SI]) (-?[\d.]+)\)", text)
    assert m, text
    return np.array([float(m.group(2 * i + 2)) * (1 if m.group(2 * i + 1) in "RAS" else -1) for i in range(3)])


def _crosshair_at(page, x, y):
    """Crosshair click at page (x, y); the RAS the server made of it."""
    before = text_of(page, "spineai-measure-progress").strip()
    page.mouse.click(x, y)
    return _ras(_progress(page, f"t.startsWith('Crosshair:') && t !== {before!r}"))


def _endplate_ends(centre_s, degrees, half_mm=38.0):
    """The RAS ends of a synthetic endplate bar (R = voxel x, S = voxel z: the NIfTI's identity affine)."""
    t = math.radians(degrees)
    centre, along = np.array([80.0, 0.0, centre_s]), np.array([math.cos(t), 0.0, math.sin(t)])
    return centre - half_mm * along, centre + half_mm * along


@pytest.mark.browser
@pytest.mark.realdata
def test_viewer_controls_in_browser(shared_data, tmp_path):
    reason = missing_browser_reason()
    if reason:
        pytest.skip(reason)
    ct = shared_data / "ct_thoracolumbar" / "ct.nii.gz"
    mri = shared_data / "mri_lumbar_unlabelled" / "t2_lumbar_sct.nii.gz"
    for path in (ct, mri):
        if not path.exists():
            pytest.skip(f"{path} is absent")
    curve = _synthetic_curve(tmp_path / "curve.nii.gz")

    with WebServer(ct, log_path=tmp_path / "server.log") as server, browser_page(server.url) as page:
        # 0. A page load asks for nothing the server refuses and logs no error (the 405 of issue 14).
        failures = []
        page.on("response", lambda r: failures.append(f"{r.status} {r.request.method} {r.url}") if r.status >= 400
                else None)
        page.on("console", lambda m: failures.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.reload()
        wait_for_views(page, (AXIAL, SAGITTAL, CORONAL, THREED))
        wait_until_frame_settles(page, AXIAL)
        assert failures == []

        # 1. Each view says what it is, which way the patient lies, its slice and its window/level.
        assert _view_text(page, AXIAL, "name") == "Axial" and _view_text(page, SAGITTAL, "name") == "Sagittal"
        letters = {tag: [_view_text(page, tag, k) for k in ("left", "right", "top", "bottom")]
                   for tag in (AXIAL, SAGITTAL, CORONAL)}
        assert letters == {AXIAL: ["R", "L", "A", "P"], SAGITTAL: ["A", "P", "S", "I"], CORONAL: ["R", "L", "S", "I"]}
        axial = view_pixels(page, AXIAL, save_to=tmp_path / "axial_ct.png")
        h, w = axial.shape[:2]
        assert axial[int(h * 0.45):int(h * 0.55), int(w * 0.08):int(w * 0.14)].max() > 200, "no letter at the left"
        assert re.fullmatch(r"slice \d+/112\s+[SI] [\d.]+ mm", _view_text(page, AXIAL, "slice"))
        auto = _wl(text_of(page, "spineai-wl-text"))
        assert auto is not None and _wl(_view_text(page, CORONAL, "wl")) == auto

        # 2. Presets: bone, then soft tissue; the readout follows and the image changes.
        centre = (slice(int(h * 0.3), int(h * 0.7)), slice(int(w * 0.3), int(w * 0.7)))
        page.click("#spineai-wl-bone")
        wait_for_text(page, "spineai-wl-text", "t.includes('W 1000') && t.includes('L 400')")
        wait_until_frame_settles(page, AXIAL)
        bone = view_pixels(page, AXIAL, save_to=tmp_path / "axial_bone.png")
        assert _wl(_view_text(page, AXIAL, "wl")) == (1000, 400) == _wl(_view_text(page, SAGITTAL, "wl"))
        page.click("#spineai-wl-soft")
        wait_for_text(page, "spineai-wl-text", "t.includes('W 400') && t.includes('L 40')")
        wait_until_frame_settles(page, AXIAL)
        soft = view_pixels(page, AXIAL, save_to=tmp_path / "axial_soft.png")
        # Soft tissue (muscle, organs at 20-60 HU) is mid grey in the soft-tissue window, dark in bone's.
        assert soft[centre].mean() > bone[centre].mean() + 30

        # 3. Left-drag on a slice: window/level change, on screen and in the readout.
        b = _box(page, AXIAL)
        x0, y0 = b["x"] + b["width"] * 0.5, b["y"] + b["height"] * 0.5
        page.mouse.move(x0, y0)
        page.mouse.down()
        for i in range(1, 11):
            page.mouse.move(x0 + 8 * i, y0 - 5 * i)
            time.sleep(0.03)
        page.mouse.up()
        wait_for_text(page, "spineai-wl-text", "!t.includes('W 400 ')")
        wait_until_frame_settles(page, AXIAL)
        dragged_wl = _wl(text_of(page, "spineai-wl-text"))
        assert dragged_wl[0] > 400, dragged_wl  # dragged right: a wider window
        dragged = view_pixels(page, AXIAL)
        assert np.abs(dragged[centre].astype(int) - soft[centre]).mean() > 3, "the drag changed nothing on screen"
        assert _wl(_view_text(page, AXIAL, "wl")) == dragged_wl

        # 4. The wheel scrolls slices: the slice line follows.
        before = _view_text(page, AXIAL, "slice")
        page.mouse.move(x0, y0)
        page.mouse.wheel(0, 300)
        page.wait_for_function(f"""() => document.querySelector('.spineai-view-text-{AXIAL} .spineai-vt-slice')
                                   .innerText.trim() !== {before!r}""")

        # 5. Crosshair: a click on the axial view takes the sagittal and coronal views there.
        _tool(page, "crosshair", "click a point")
        sagittal_before, coronal_before = _view_text(page, SAGITTAL, "slice"), _view_text(page, CORONAL, "slice")
        colour_before = coloured_fraction(view_pixels(page, SAGITTAL))
        _click_at(page, AXIAL, 0.35, 0.4)
        page.wait_for_function(f"""() => document.querySelector('.spineai-view-text-{SAGITTAL} .spineai-vt-slice')
                                   .innerText.trim() !== {sagittal_before!r}""")
        assert _view_text(page, CORONAL, "slice") != coronal_before
        wait_until_frame_settles(page, SAGITTAL)
        deadline = time.monotonic() + 20  # the crosshair's coloured lines come with the next frame
        while coloured_fraction(view_pixels(page, SAGITTAL, save_to=tmp_path / "crosshair.png")) <= colour_before:
            assert time.monotonic() < deadline, "no crosshair drawn in the sagittal view"
            time.sleep(0.5)

        # 6. Rulers: twice the length on screen reads twice the distance; a right angle reads 90.
        _tool(page, "ruler", "two points")
        _place_fractions(page, AXIAL, [(0.3, 0.5), (0.5, 0.5)], "Ruler 1", 2)
        short = _measurement(page, "Ruler 1")
        _place_fractions(page, AXIAL, [(0.3, 0.6), (0.7, 0.6)], "Ruler 2", 2)
        long = _measurement(page, "Ruler 2")
        assert 20 < short < 300 and long == pytest.approx(2 * short, rel=0.03)
        wait_until_frame_settles(page, AXIAL)
        ruler_pixels = view_pixels(page, AXIAL, save_to=tmp_path / "rulers.png")
        rh, rw = ruler_pixels.shape[:2]  # the view as it is now (the page may have laid out again)
        band = ruler_pixels[int(rh * 0.58):int(rh * 0.62), int(rw * 0.4):int(rw * 0.65)]  # along Ruler 2
        between = ruler_pixels[int(rh * 0.535):int(rh * 0.575), int(rw * 0.4):int(rw * 0.65)]  # between the two
        assert coloured_fraction(band) > coloured_fraction(between) + 0.003, "the ruler is not drawn"
        _tool(page, "angle", "three points")
        b = _box(page, AXIAL)
        s = min(b["width"], b["height"]) * 0.2  # square on screen: pixels are square in mm too
        cx, cy = b["x"] + b["width"] * 0.5, b["y"] + b["height"] * 0.32  # clear of the rulers' points
        _place(page, AXIAL, [(cx + s, cy), (cx, cy), (cx, cy - s)], "Angle 1", 3)
        assert _measurement(page, "Angle 1") == pytest.approx(90.0, abs=1.0)
        page.click("#spineai-measure-clear")
        page.wait_for_function("() => !document.getElementById('spineai-measurements')")
        _tool(page, "wl", "drag on a slice")

        # 7. A synthetic curve: a Cobb angle drawn along its two endplates reads their 30 degrees.
        set_text_field(page, "spineai-load-path", str(curve))
        page.click("#spineai-load-button")
        wait_for_text(page, "spineai-load-message", "t.startsWith('loaded curve')")
        # Where the coronal view puts RAS on the page, read back from two crosshair clicks far apart
        # (the panel gives the crosshair's RAS to 0.1 mm): no rotation in a coronal view, so R
        # follows page x and S page y, each linearly. (The slice node has the new volume's
        # geometry once the load message is there, even if its first frame is still on its way.)
        _tool(page, "crosshair", "click a point")
        b = _box(page, CORONAL)
        corners = [(b["x"] + b["width"] * f, b["y"] + b["height"] * f) for f in (0.1, 0.9)]
        (r0, a0, s0), (r1, a1, s1) = (_crosshair_at(page, x, y) for x, y in corners)
        (x0, y0), (x1, y1) = corners
        mm_per_x, mm_per_y = (r1 - r0) / (x1 - x0), (s1 - s0) / (y1 - y0)
        assert abs(a1 - a0) < 0.05, "the crosshair clicks left the coronal plane"
        assert abs(mm_per_x) == pytest.approx(abs(mm_per_y), rel=0.02), "pixels are not square in mm"

        def on_page(ras):
            return x0 + (ras[0] - r0) / mm_per_x, y0 + (ras[2] - s0) / mm_per_y

        upper, lower = _endplate_ends(112, UPPER_DEG), _endplate_ends(48, LOWER_DEG)
        clicks = [on_page(p) for p in (*upper, *lower)]

        def off_the_bars():
            """Points along the lines to be clicked that the coronal view does not show bright."""
            coronal = view_pixels(page, CORONAL, save_to=tmp_path / "curve.png")
            grey, scale = coronal.astype(float).mean(axis=2), coronal.shape[1] / b["width"]
            off = []
            for p, q in ((clicks[0], clicks[1]), (clicks[2], clicks[3])):
                for f in np.linspace(0, 1, 21):
                    x, y = (np.array(p) + f * (np.array(q) - np.array(p)) - (b["x"], b["y"])) * scale
                    if grey[int(round(y)), int(round(x))] <= 150:
                        off.append((round(x), round(y)))
            return off

        # The clicks will land on the bars, all along them, once the view shows the curve.
        deadline = time.monotonic() + 60
        while off := off_the_bars():
            assert time.monotonic() < deadline, f"points {off} of the lines to click are off the bars"
            time.sleep(0.5)
        _tool(page, "cobb", "upper endplate")
        _place(page, CORONAL, clicks[:2], "Cobb 1", 4)
        wait_for_text(page, "spineai-measure-hint", "t.includes('lower endplate')")
        _place(page, CORONAL, clicks[2:], "Cobb 1", 4, first=3)
        cobb = _measurement(page, "Cobb 1")
        assert _box(page, CORONAL) == b, "the coronal view moved while the clicks were made"
        assert cobb == pytest.approx(UPPER_DEG - LOWER_DEG, abs=1.0)
        wait_until_frame_settles(page, CORONAL)
        view_pixels(page, CORONAL, save_to=tmp_path / "cobb.png")
        page.click("#spineai-measure-clear")  # the Cobb lines and the crosshair
        page.wait_for_function("() => !document.getElementById('spineai-measurements')")
        _tool(page, "wl", "drag on a slice")

        # 8. The lumbar MRI, loaded through the panel: its axial view is drawn without any other
        # action, and its 3-D view shows bright structures, not a block of noise filling the
        # volume's box (nor the volumes loaded before it).
        axial_src, threed_src = img_src(page, AXIAL), img_src(page, THREED)
        set_text_field(page, "spineai-load-path", str(mri))
        page.click("#spineai-load-button")
        wait_for_text(page, "spineai-load-message", "t.startsWith('loaded t2_lumbar_sct')")
        wait_for_new_frame(page, AXIAL, axial_src, timeout_ms=60000)
        deadline = time.monotonic() + 60  # the views' first renders come in turn on a busy server
        # (A sagittal acquisition: its axial slice is a narrow strip of the view.)
        while (lit := (_image_pixels(page, AXIAL).max(axis=2) > 30).mean()) < 0.01:
            assert time.monotonic() < deadline, f"the MRI's axial view stays blank ({lit:.3f} of it lit)"
            time.sleep(0.5)
        view_pixels(page, AXIAL, save_to=tmp_path / "axial_mri.png")
        wait_for_new_frame(page, THREED, threed_src, timeout_ms=60000)
        wait_until_frame_settles(page, THREED, quiet_s=2.0)
        threed = _image_pixels(page, THREED).astype(int)
        view_pixels(page, THREED, save_to=tmp_path / "threed_mri.png")
        background = np.median(np.concatenate([threed[0], threed[-1]]), axis=0)
        drawn = np.abs(threed - background).max(axis=2) > 40
        assert 0.002 < drawn.mean() < 0.15, f"3-D view: {drawn.mean():.3f} of it drawn"
