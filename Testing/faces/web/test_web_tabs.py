"""Two browser tabs on one server share one state (the README's promise), checked by what a
person sees in each tab: an image loaded from one tab shows in the other tab's views and lists,
a Clear pressed in the other tab empties the first one's. The second tab is opened without the
token, as a person opens another tab of the same browser (the token's cookie lets it in).
"""

import numpy as np
import pytest
from web_helpers import (
    AXIAL,
    WebServer,
    browser_tabs,
    missing_browser_reason,
    set_text_field,
    text_of,
    view_img_selector,
    view_pixels,
    wait_for_text,
    wait_until_frame_settles,
)


@pytest.mark.browser
def test_two_tabs_share_one_state(tmp_path):
    reason = missing_browser_reason()
    if reason:
        pytest.skip(reason)
    from SpineAILib.io.volumes import save_volume_file
    from SpineAILib.samples.spine_phantom import make_phantom

    ct, _ = make_phantom("CT", shape_kji=(40, 64, 64), spacing=(3.0, 3.0, 4.0))
    path = tmp_path / "phantom_ct.nii.gz"
    save_volume_file(ct, path)

    with WebServer(log_path=tmp_path / "server.log") as server, browser_tabs(server.url) as (first, second):
        assert "token" not in first.url and "token" not in second.url  # the token left both addresses
        for page in (first, second):
            wait_for_text(page, "spineai-loaded-list", "t.includes('nothing yet')")

        # 1. Loaded from the first tab: the second tab shows the path, the message, the list and the image.
        set_text_field(first, "spineai-load-path", str(path))
        first.click("#spineai-load-button")
        message = wait_for_text(first, "spineai-load-message", "t.startsWith('loaded phantom_ct')")
        assert wait_for_text(second, "spineai-load-message", "t.startsWith('loaded')") == message
        assert second.input_value("#spineai-load-path") == str(path)
        assert "phantom_ct" in wait_for_text(second, "spineai-loaded-list", "t.includes('phantom_ct')")
        second.bring_to_front()  # a person switches to the other tab to look at it
        second.wait_for_function(
            """(s) => { const img = document.querySelector(s); if (!img || !img.complete) return false;
                   const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
                   const g = c.getContext('2d'); g.drawImage(img, 0, 0);
                   const d = g.getImageData(0, 0, c.width, c.height).data; let lit = 0;
                   for (let i = 0; i < d.length; i += 4) if (d[i] > 60) lit++;
                   return lit > d.length / 4 * 0.2; }""",
            arg=view_img_selector(AXIAL), timeout=60000)  # a fifth of the view lit: the CT, not black
        wait_until_frame_settles(second, AXIAL)
        first.bring_to_front()
        wait_until_frame_settles(first, AXIAL)
        seen_second = view_pixels(second, AXIAL, save_to=tmp_path / "second_axial.png")
        seen_first = view_pixels(first, AXIAL, save_to=tmp_path / "first_axial.png")
        assert seen_second.std() > 10, "the second tab's axial view shows no image"  # it was black before
        assert seen_second.shape == seen_first.shape
        assert np.abs(seen_second.astype(float) - seen_first).mean() < 5, "the tabs show different axial images"

        # 2. Cleared from the second tab: the first tab's list and message follow.
        second.click("#spineai-panel button:has-text('Clear')")
        wait_for_text(first, "spineai-loaded-list", "t.includes('nothing yet')")
        assert text_of(first, "spineai-load-message") == "scene cleared"
        assert server.process.poll() is None
