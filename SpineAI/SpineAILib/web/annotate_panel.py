"""The Annotate panel, the pointer overlay on each slice view and the page's key / pointer script.

Layout and bindings only: every control calls a method of ``annotate.WebAnnotator``. Keys and
strokes are caught by a small script in the page (``CLIENT_SCRIPT``) and sent to the server
with ``trame.trigger``: keys anywhere but in text fields and sliders, strokes on the overlay
that covers a slice view while a drawing tool is chosen (so the view does not pan or zoom
under the brush). A stroke is sent once, when the button is released, as fractions of the
view's size; the page draws it meanwhile so the annotator sees where it goes.
"""

from trame.widgets import client, html
from trame.widgets import vuetify3 as v3

from SpineAILib.web.annotate import KEY_TRIGGER, STROKE_TRIGGER

CLIENT_SCRIPT = """
(function () {
  if (window.__spineaiAnnotate) return;
  window.__spineaiAnnotate = true;
  const KEYS = ['ArrowLeft', 'ArrowRight', '1', '2', '3', 'q', 'w', 'e', 'c', 'z', 'y'];
  function typing(el) {
    if (!el || !el.closest) return false;
    const tag = (el.tagName || '').toLowerCase();
    return tag === 'input' || tag === 'textarea' || tag === 'select' || el.isContentEditable
      || !!el.closest('.v-slider') || !!el.closest('.v-field');
  }
  document.addEventListener('keydown', (ev) => {
    if (typing(ev.target) || ev.altKey || ev.metaKey || !window.trame) return;
    const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    if (!KEYS.includes(key)) return;
    if (!ev.ctrlKey && (key === 'z' || key === 'y')) return;
    ev.preventDefault();
    window.trame.trigger('KEY_TRIGGER', [ev.key, ev.ctrlKey, ev.shiftKey]);
  });
  let drag = null;
  function fraction(ev, el) {
    const r = el.getBoundingClientRect();
    return [(ev.clientX - r.left) / r.width, (ev.clientY - r.top) / r.height];
  }
  function draw(d) {
    let svg = d.el.querySelector('svg');
    if (!svg) {  // the stroke as the annotator draws it (the server's mask follows on release)
      const NS = 'http://www.w3.org/2000/svg';
      svg = document.createElementNS(NS, 'svg');
      svg.setAttribute('style', 'position:absolute;inset:0;width:100%;height:100%;pointer-events:none');
      const poly = document.createElementNS(NS, 'polyline');
      poly.setAttribute('fill', 'none');
      poly.setAttribute('stroke', '#ffeb3b');
      poly.setAttribute('stroke-width', '2');
      svg.appendChild(poly);
      d.el.appendChild(svg);
    }
    const r = d.el.getBoundingClientRect();
    const line = svg.querySelector('polyline');
    line.setAttribute('points', d.points.map(p => (p[0] * r.width) + ',' + (p[1] * r.height)).join(' '));
  }
  document.addEventListener('mousedown', (ev) => {
    const el = ev.target.closest ? ev.target.closest('.spineai-annot-overlay') : null;
    if (!el || ev.button !== 0) return;
    ev.preventDefault();
    drag = { el, view: el.dataset.view, points: [fraction(ev, el)] };
    draw(drag);
  });
  document.addEventListener('mousemove', (ev) => {
    if (!drag) return;
    const p = fraction(ev, drag.el), q = drag.points[drag.points.length - 1];
    if (Math.abs(p[0] - q[0]) + Math.abs(p[1] - q[1]) > 0.002) { drag.points.push(p); draw(drag); }
  });
  document.addEventListener('mouseup', (ev) => {
    if (!drag) return;
    const d = drag;
    drag = null;
    d.points.push(fraction(ev, d.el));
    // The tool goes with the stroke: a tool change may still be on its way to the server.
    window.trame.trigger('STROKE_TRIGGER', [d.view, d.points, window.trame.state.get('annot_tool')]);
    setTimeout(() => { d.points = []; draw(d); }, 400);
  });
})();
""".replace("KEY_TRIGGER", KEY_TRIGGER).replace("STROKE_TRIGGER", STROKE_TRIGGER)

TOOL_ITEMS = [("none", "mdi-cursor-default", "views: pan / zoom"), ("brush", "mdi-brush", "paint"),
              ("erase", "mdi-eraser", "erase"), ("box", "mdi-vector-square", "box: two clicks or a drag"),
              ("point", "mdi-map-marker-plus", "disc point: click")]
LABEL_BUTTONS = [("bad_quality", "1 bad quality", "error"), ("spinal_cord", "2 cord", "success"), ("csf", "3 CSF", "info")]


def view_overlay(view_tag):
    """Inside a slice view's container: catches strokes while a drawing tool is chosen."""
    html.Div(
        classes="spineai-annot-overlay",
        __properties=[("data_view", "data-view")],
        data_view=view_tag,
        v_show=("annot_open && annot_tool !== 'none'",),
        style="position: absolute; inset: 0; z-index: 5; cursor: crosshair;",
    )


def _row(gap=6):
    return html.Div(classes="d-flex align-center mt-1", style=f"gap: {gap}px")


def build(annotator, heading):
    """The Annotate section of the side panel; ``heading`` draws a section title as the panel does."""
    client.Script(CLIENT_SCRIPT)
    heading("Annotate")
    with html.Div(id="spineai-annotate"):
        v3.VTextField(v_model=("annot_folder",), id="spineai-annot-folder", label="Case folder (on the server)",
                      density="compact", hide_details=True, clearable=True)
        with _row():
            v3.VBtn("Open case", id="spineai-annot-open", size="small", color="primary",
                    click=(annotator.open_case, "[annot_folder]"))
            v3.VBtn("Close", id="spineai-annot-close", size="small", variant="text", v_show=("annot_open",),
                    click=annotator.close)
            v3.VSpacer()
            v3.VBtn(icon="mdi-undo", id="spineai-annot-undo", size="small", variant="tonal", title="Undo (Ctrl+Z)",
                    disabled=("!annot_can_undo",), click=annotator.undo)
            v3.VBtn(icon="mdi-redo", id="spineai-annot-redo", size="small", variant="tonal", title="Redo (Ctrl+Y)",
                    disabled=("!annot_can_redo",), click=annotator.redo)
        html.Div("{{ annot_status }}", id="spineai-annot-status", v_show=("annot_open",),
                 classes="text-caption text-medium-emphasis mt-1", title=("annot_folder",))
        with html.Div(v_show=("annot_open",)):
            _prefill(annotator)
            _tools(annotator)
            with html.Div(v_show=("annot_kind === 'cine'",)):
                _frame_labels(annotator)
            with html.Div(v_show=("annot_task === 'lumbar-mri'",)):
                _severity(annotator)
            with html.Div(v_show=("annot_task === 'cervical-ct'",)):
                _fractures(annotator)
            html.Div("{{ annot_help }}", classes="text-caption text-disabled mt-1", v_show=("annot_kind === 'cine'",))
        html.Div("{{ annot_message }}", id="spineai-annot-message", v_show=("annot_message",), title=("annot_message",),
                 classes=("annot_error ? 'text-error text-caption mt-1' : 'text-medium-emphasis text-caption mt-1'",),
                 style="white-space: nowrap; overflow: hidden; text-overflow: ellipsis;")


def _prefill(annotator):
    with _row():
        v3.VTextField(v_model=("annot_run",), id="spineai-annot-run", label="Prefill from a run folder",
                      placeholder=("results_path",), density="compact", hide_details=True)
        v3.VBtn("Prefill", id="spineai-annot-prefill", size="small", variant="tonal",
                click=(annotator.prefill, "[annot_run || results_path]"))


def _tools(annotator):
    with _row():
        with v3.VBtnToggle(v_model=("annot_tool",), id="spineai-annot-tools", density="compact", mandatory=True,
                           variant="outlined", divided=True):
            for value, icon, title in TOOL_ITEMS:
                v3.VBtn(icon=icon, value=value, id=f"spineai-annot-tool-{value}", title=title, size="small",
                        v_show=("annot_kind !== 'cine'" if value == "point" else "true",))
        v3.VSelect(v_model=("annot_structure",), items=("annot_structures",), id="spineai-annot-structure",
                   label="structure", density="compact", hide_details=True)
    with _row():
        v3.VSlider(v_model=("annot_radius",), id="spineai-annot-radius", min=0.2, max=20, step=0.1,
                   density="compact", hide_details=True, label="brush", thumb_label=True)
        html.Span("{{ Number(annot_radius).toFixed(1) }} mm", classes="text-caption", style="min-width: 52px")
    v3.VSelect(v_model=("annot_level",), items=("annot_levels",), id="spineai-annot-level", label="disc point",
               density="compact", hide_details=True, classes="mt-1", v_show=("annot_tool === 'point'",))
    html.Div("{{ annot_pending }}", id="spineai-annot-pending", v_show=("annot_pending",), classes="text-caption text-warning")
    with _row():
        v3.VTextField(v_model=("annot_low",), label="low", type="number", density="compact", hide_details=True,
                      id="spineai-annot-low", style="max-width: 80px")
        v3.VTextField(v_model=("annot_high",), label="high", type="number", density="compact", hide_details=True,
                      id="spineai-annot-high", style="max-width: 80px")
        v3.VBtn("Threshold", id="spineai-annot-threshold", size="small", variant="tonal",
                title="the structure becomes the pixels whose value is in [low, high]",
                click=(annotator.threshold, "[annot_low, annot_high]"))
    with _row():
        v3.VTextField(v_model=("annot_min_island",), label="min voxels", type="number", density="compact",
                      hide_details=True, id="spineai-annot-min-island", style="max-width: 100px")
        v3.VBtn("Islands", id="spineai-annot-islands", size="small", variant="tonal",
                title="remove the pieces of the structure smaller than this",
                click=(annotator.islands, "[annot_min_island, false]"))
        v3.VBtn("Largest", size="small", variant="text", title="keep only the largest piece",
                click=(annotator.islands, "[0, true]"))
        v3.VBtn("Delete box", id="spineai-annot-delete-box", size="small", variant="text", click=annotator.delete_box)


def _frame_labels(annotator):
    with _row():
        for label, text, colour in LABEL_BUTTONS:
            v3.VChip(text, id=f"spineai-annot-label-{label}", size="small", label=True,
                     color=(f"annot_labels.{label} ? '{colour}' : undefined",),
                     variant=(f"annot_labels.{label} ? 'flat' : 'outlined'",),
                     click=(annotator.toggle, f"['{label}']"))
        v3.VBtn("C copy previous", id="spineai-annot-copy", size="x-small", variant="text", click=annotator.copy_previous)
    html.Div("{{ annot_frame_info }}", id="spineai-annot-frame-info", classes="text-caption text-medium-emphasis")


def _severity(annotator):
    html.Div("{{ annot_frame_info }}", classes="text-caption text-medium-emphasis mt-1")
    with v3.VTable(density="compact", id="spineai-annot-severity", classes="mt-1"):
        with html.Thead(), html.Tr():
            html.Th("level")
            html.Th("{{ annot_condition_titles[c] }}", v_for="c in annot_conditions", key="c", title=("c",),
                    classes="text-caption px-1")
        with html.Tbody(), html.Tr(v_for="level in annot_levels", key="level"):
            html.Td("{{ level }}", classes="px-1 text-caption")
            with html.Td(v_for="c in annot_conditions", key="c", classes="px-1"):
                v3.VSelect(model_value=("annot_severity[level + '|' + c] || ''",), items=("annot_grades",),
                           density="compact", hide_details=True, variant="plain", menu_icon="",
                           classes="text-caption",
                           update_modelValue=(annotator.set_severity, "[level, c, $event]"))


def _fractures(annotator):
    with html.Div(id="spineai-annot-fractures", classes="d-flex flex-wrap mt-1", style="gap: 4px"):
        with html.Div(v_for="v in annot_vertebrae", key="v", style="width: 88px"):
            v3.VSelect(model_value=("annot_fractures[v] || ''",), items=("['', 'no', 'yes']",), label=("v",),
                       density="compact", hide_details=True,
                       update_modelValue=(annotator.set_fracture, "[v, $event]"))
