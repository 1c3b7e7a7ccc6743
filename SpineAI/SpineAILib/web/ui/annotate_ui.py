"""The Annotate section, the pointer overlay on each slice view and the page's key / pointer script.

Layout and bindings only: every control emits a signal of ``AnnotateUI`` that
``logic.annotate_logic.AnnotateLogic`` connects to. Keys and strokes are caught by a small
script in the page (``CLIENT_SCRIPT``) and sent to the server with ``trame.trigger``: keys
anywhere but in text fields and sliders, strokes on the overlay that covers a slice view while a
drawing tool is chosen (so the view does not pan or zoom under the brush). A stroke is sent
once, when the button is released, as fractions of the view's size; the page draws it meanwhile
so the annotator sees where it goes.
"""

from dataclasses import dataclass, field

from trame.widgets import client, html
from trame.widgets import vuetify3 as v3
from undo_stack import Signal

from SpineAILib.annotation import keys
from SpineAILib.annotation.case import CINE_STRUCTURES, DISC_LEVELS
from SpineAILib.vocabulary import CERVICAL_VERTEBRAE, ULTRASOUND_LABELS
from SpineAILib.vocabulary import SEVERITY_CONDITIONS as CONDITIONS
from SpineAILib.vocabulary import SEVERITY_GRADE_NAMES as GRADE_NAMES
from SpineAILib.web.typed_state import FlatState
from SpineAILib.web.ui.panel_ui import heading

KEY_TRIGGER = "spineai_annot_key"
STROKE_TRIGGER = "spineai_annot_stroke"
CONDITION_TITLES = {"spinal_canal_stenosis": "canal", "left_neural_foraminal_narrowing": "L foram.",
                    "right_neural_foraminal_narrowing": "R foram.", "left_subarticular_stenosis": "L subart.",
                    "right_subarticular_stenosis": "R subart."}
GRADE_ITEMS = [{"title": "·", "value": ""}] + [
    {"title": {"Normal/Mild": "N/M", "Moderate": "Mod", "Severe": "Sev"}[g], "value": g} for g in GRADE_NAMES]


@dataclass
class AnnotateState:
    annot_open: bool = False
    annot_folder: str = ""
    annot_run: str = ""
    annot_kind: str = ""  # 'cine' or 'volume' of the open case
    annot_task: str = ""
    annot_tool: str = "none"
    annot_structure: str = "csf"
    annot_structures: list = field(default_factory=lambda: list(CINE_STRUCTURES))
    annot_radius: float = 2.0
    annot_labels: dict = field(default_factory=lambda: {name: 0 for name in ULTRASOUND_LABELS})
    annot_frame_info: str = ""
    annot_status: str = ""
    annot_message: str = ""
    annot_error: bool = False
    annot_can_undo: bool = False
    annot_can_redo: bool = False
    annot_low: float = 0.0
    annot_high: float = 60.0
    annot_min_island: int = 20
    annot_level: str = DISC_LEVELS[0]
    annot_levels: list = field(default_factory=lambda: list(DISC_LEVELS))
    annot_conditions: list = field(default_factory=lambda: list(CONDITIONS))
    annot_condition_titles: dict = field(default_factory=lambda: dict(CONDITION_TITLES))
    annot_grades: list = field(default_factory=lambda: [dict(g) for g in GRADE_ITEMS])
    annot_severity: dict = field(default_factory=dict)
    annot_fractures: dict = field(default_factory=dict)
    annot_vertebrae: list = field(default_factory=lambda: list(CERVICAL_VERTEBRAE))
    annot_pending: str = ""
    annot_help: str = keys.HELP


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


class AnnotateUI:
    """The section's controls; each emits a signal (the page's keys and strokes too)."""

    open_clicked = Signal(str)  # case folder
    close_clicked = Signal()
    undo_clicked = Signal()
    redo_clicked = Signal()
    prefill_clicked = Signal(str)  # run folder
    toggle_clicked = Signal(str)  # frame label
    copy_previous_clicked = Signal()
    threshold_clicked = Signal(object, object)  # low, high
    islands_clicked = Signal(object, bool)  # min voxels, keep the largest only
    delete_box_clicked = Signal()
    severity_chosen = Signal(str, str, object)  # level, condition, grade
    fracture_chosen = Signal(str, object)  # vertebra, '' / 'no' / 'yes'
    key_pressed = Signal(str, bool, bool)  # key, ctrl, shift
    stroke_drawn = Signal(str, list, object)  # view tag, pointer positions (fractions), tool

    def __init__(self, server):
        self.typed = FlatState(server.state, AnnotateState)
        server.trigger(KEY_TRIGGER)(self._on_key)
        server.trigger(STROKE_TRIGGER)(self._on_stroke)

    def _on_key(self, key, ctrl=False, shift=False):
        self.key_pressed(key, bool(ctrl), bool(shift))

    def _on_stroke(self, view_tag, fractions, tool=None):
        self.stroke_drawn(view_tag, fractions, tool)

    def build(self):
        build(self)


def _row(gap=6):
    return html.Div(classes="d-flex align-center mt-1", style=f"gap: {gap}px")


def build(ui):
    """The Annotate section of the side panel."""
    client.Script(CLIENT_SCRIPT)
    heading("Annotate")
    with html.Div(id="spineai-annotate"):
        v3.VTextField(v_model=("annot_folder",), id="spineai-annot-folder", label="Case folder (on the server)",
                      density="compact", hide_details=True, clearable=True)
        with _row():
            v3.VBtn("Open case", id="spineai-annot-open", size="small", color="primary",
                    click=(ui.open_clicked, "[annot_folder]"))
            v3.VBtn("Close", id="spineai-annot-close", size="small", variant="text", v_show=("annot_open",),
                    click=ui.close_clicked)
            v3.VSpacer()
            v3.VBtn(icon="mdi-undo", id="spineai-annot-undo", size="small", variant="tonal", title="Undo (Ctrl+Z)",
                    disabled=("!annot_can_undo",), click=ui.undo_clicked)
            v3.VBtn(icon="mdi-redo", id="spineai-annot-redo", size="small", variant="tonal", title="Redo (Ctrl+Y)",
                    disabled=("!annot_can_redo",), click=ui.redo_clicked)
        html.Div("{{ annot_status }}", id="spineai-annot-status", v_show=("annot_open",),
                 classes="text-caption text-medium-emphasis mt-1", title=("annot_folder",))
        with html.Div(v_show=("annot_open",)):
            _prefill(ui)
            _tools(ui)
            with html.Div(v_show=("annot_kind === 'cine'",)):
                _frame_labels(ui)
            with html.Div(v_show=("annot_task === 'lumbar-mri'",)):
                _severity(ui)
            with html.Div(v_show=("annot_task === 'cervical-ct'",)):
                _fractures(ui)
            html.Div("{{ annot_help }}", classes="text-caption text-disabled mt-1", v_show=("annot_kind === 'cine'",))
        html.Div("{{ annot_message }}", id="spineai-annot-message", v_show=("annot_message",), title=("annot_message",),
                 classes=("annot_error ? 'text-error text-caption mt-1' : 'text-medium-emphasis text-caption mt-1'",),
                 style="white-space: nowrap; overflow: hidden; text-overflow: ellipsis;")


def _prefill(ui):
    with _row():
        v3.VTextField(v_model=("annot_run",), id="spineai-annot-run", label="Prefill from a run folder",
                      placeholder=("results_path",), density="compact", hide_details=True)
        v3.VBtn("Prefill", id="spineai-annot-prefill", size="small", variant="tonal",
                click=(ui.prefill_clicked, "[annot_run || results_path]"))


def _tools(ui):
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
                click=(ui.threshold_clicked, "[annot_low, annot_high]"))
    with _row():
        v3.VTextField(v_model=("annot_min_island",), label="min voxels", type="number", density="compact",
                      hide_details=True, id="spineai-annot-min-island", style="max-width: 100px")
        v3.VBtn("Islands", id="spineai-annot-islands", size="small", variant="tonal",
                title="remove the pieces of the structure smaller than this",
                click=(ui.islands_clicked, "[annot_min_island, false]"))
        v3.VBtn("Largest", size="small", variant="text", title="keep only the largest piece",
                click=(ui.islands_clicked, "[0, true]"))
        v3.VBtn("Delete box", id="spineai-annot-delete-box", size="small", variant="text", click=ui.delete_box_clicked)


def _frame_labels(ui):
    with _row():
        for label, text, colour in LABEL_BUTTONS:
            v3.VChip(text, id=f"spineai-annot-label-{label}", size="small", label=True,
                     color=(f"annot_labels.{label} ? '{colour}' : undefined",),
                     variant=(f"annot_labels.{label} ? 'flat' : 'outlined'",),
                     click=(ui.toggle_clicked, f"['{label}']"))
        v3.VBtn("C copy previous", id="spineai-annot-copy", size="x-small", variant="text", click=ui.copy_previous_clicked)
    html.Div("{{ annot_frame_info }}", id="spineai-annot-frame-info", classes="text-caption text-medium-emphasis")


def _severity(ui):
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
                           update_modelValue=(ui.severity_chosen, "[level, c, $event]"))


def _fractures(ui):
    with html.Div(id="spineai-annot-fractures", classes="d-flex flex-wrap mt-1", style="gap: 4px"):
        with html.Div(v_for="v in annot_vertebrae", key="v", style="width: 88px"):
            v3.VSelect(model_value=("annot_fractures[v] || ''",), items=("['', 'no', 'yes']",), label=("v",),
                       density="compact", hide_details=True,
                       update_modelValue=(ui.fracture_chosen, "[v, $event]"))
