"""The Loaded section (what is in the scene, 3-D rendering, heat map, Clear, layout), the
results tables under the panel, and what each view carries besides its image (its gutter,
a hidden marker naming it, the Annotate pointer overlay on slice views)."""

from dataclasses import dataclass, field

from trame.widgets import html
from trame.widgets import vuetify3 as v3
from trame_slicer.app.ui import create_vertical_slice_view_gutter_ui, create_vertical_view_gutter_ui
from undo_stack import Signal

from SpineAILib.web.typed_state import FlatState
from SpineAILib.web.ui.annotate_ui import view_overlay
from SpineAILib.web.ui.cine_ui import ReviewState
from SpineAILib.web.ui.panel_ui import heading

KIND_ICONS = {
    "volume": "mdi-cube-outline",
    "label map": "mdi-label-outline",
    "cine": "mdi-filmstrip",
    "segmentation": "mdi-shape-outline",
    "markups": "mdi-map-marker-outline",
    "table": "mdi-table",
}


@dataclass
class ViewsState:
    items: list = field(default_factory=list)  # [{id, name, kind, visible}] of the loaded nodes
    tables: list = field(default_factory=list)  # [{id, name, columns, rows}] of the table nodes
    kind_icons: dict = field(default_factory=lambda: dict(KIND_ICONS))
    layout_id: str = ""
    layout_ids: list = field(default_factory=list)
    volume_rendering: bool = True
    cine_visible: bool = False  # a cine is shown (one 2-D view, no 3-D rendering)
    mouse_tool: str = "wl"  # left button in slice views: 'wl', 'crosshair', 'ruler', 'angle', 'cobb'
    measure_hint: str = ""  # what the chosen tool wants next
    measure_progress: str = ""  # the last click's effect: "Angle 1: 2 of 3 points", "Crosshair: (R 1.0, A 2.0, S 3.0)"
    wl_text: str = ""  # "W 400  L 40" of the shown image
    view_info: dict = field(default_factory=dict)  # slice view tag -> {name, left, right, top, bottom, wl, slice}
    measurements: list = field(default_factory=list)  # [{id, name, text, kind}] of rulers, angles, Cobb angles


MOUSE_TOOLS = [("wl", "mdi-contrast-box", "Window/level: drag (double-click: auto)"),
               ("crosshair", "mdi-crosshairs-gps", "Crosshair: click a point, every view goes there"),
               ("ruler", "mdi-ruler", "Ruler: two clicks"), ("angle", "mdi-angle-acute", "Angle: three clicks"),
               ("cobb", "mdi-angle-obtuse", "Cobb angle: two lines along the end vertebrae's endplates")]
WL_BUTTONS = [("auto", "Auto"), ("bone", "Bone"), ("soft", "Soft tissue"), ("lung", "Lung"), ("brain", "Brain")]
# The text over a slice view: (key of view_info, CSS position).
VIEW_TEXT = [("name", "top: 4px; left: 44px;"), ("top", "top: 4px; left: 50%; transform: translateX(-50%);"),
             ("left", "top: 50%; left: 44px; transform: translateY(-50%);"),
             ("right", "top: 50%; right: 8px; transform: translateY(-50%);"),
             ("bottom", "bottom: 34px; left: 50%; transform: translateX(-50%);"),
             ("wl", "bottom: 34px; left: 8px;"), ("slice", "bottom: 34px; right: 8px;")]


def _view_marker(view):
    # A hidden marker per view so tests and scripts can find a view's <img> by name
    # (Red = axial, Yellow = sagittal, Green = coronal, ThreeD).
    html.Div(classes=f"spineai-view spineai-view-{view.get_singleton_tag()}", style="display: none")


def view_text(tag):
    """The view's name, orientation letters, W/L and slice over its image (text the page draws,
    so a drag or a scroll re-renders no text on the server)."""
    info = f"(view_info['{tag}'] || {{}})"
    with html.Div(classes=f"spineai-view-text spineai-view-text-{tag}",
                  style="position: absolute; inset: 0; pointer-events: none; z-index: 4; color: #eeeeee;"
                        "font: 12px/1.2 sans-serif; text-shadow: 0 0 3px #000, 0 0 2px #000;"):
        for key, position in VIEW_TEXT:
            weight = "font-weight: 600; font-size: 14px;" if key in ("top", "left", "right", "bottom") else ""
            html.Div(f"{{{{ {info}.{key} }}}}", classes=f"spineai-vt-{key}",
                     style=f"position: absolute; white-space: nowrap; {weight} {position}")


def slice_view_ui(server, view_id, view):
    create_vertical_slice_view_gutter_ui(server, view_id, view)
    _view_marker(view)
    view_text(view.get_singleton_tag())
    view_overlay(view.get_singleton_tag())  # catches brush strokes and box clicks


def threed_view_ui(server, view_id, view):
    create_vertical_view_gutter_ui(server, view_id, view)
    _view_marker(view)
    html.Div("3-D", classes="spineai-view-text", style="position: absolute; top: 4px; left: 44px; z-index: 4;"
             "pointer-events: none; color: #eeeeee; font: 12px sans-serif; text-shadow: 0 0 3px #000;")


class ViewsUI:
    item_clicked = Signal(str)  # node id: show it (a segmentation or markups: toggle it)
    clear_clicked = Signal()
    row_clicked = Signal(str, int)  # table node id, row index: centre the views on what it names
    preset_clicked = Signal(str)  # window/level preset: 'auto', 'bone', 'soft', 'lung', 'brain'
    clear_measurements_clicked = Signal()

    def __init__(self, server):
        self.typed = FlatState(server.state, ViewsState)
        self.review = FlatState(server.state, ReviewState)  # the heat-map toggle

    def build(self, disabled_expression):
        """``disabled_expression``: when Clear is disabled (a load or a run on its way)."""
        n, r = self.typed.name, self.review.name
        heading("Loaded")
        with html.Div(id="spineai-loaded-list"):
            html.Div("nothing yet", v_if=(f"!{n.items}.length",), classes="text-caption text-medium-emphasis")
            with v3.VList(density="compact", v_if=(f"{n.items}.length",), classes="py-0", bg_color="transparent"):
                with v3.VListItem(v_for=f"item in {n.items}", key="item.id", click=(self.item_clicked, "[item.id]"),
                                  classes="px-1", min_height=28):
                    with html.Div(classes="d-flex align-center", style="gap: 6px"):
                        v3.VIcon(icon=(f"{n.kind_icons}[item.kind] || 'mdi-file-outline'",), size="small")
                        html.Span("{{ item.name }}",
                                  classes=("item.visible ? 'text-body-2' : 'text-body-2 text-disabled'",))
                        v3.VSpacer()
                        v3.VIcon(icon="mdi-eye-off-outline", size="x-small", v_if=("!item.visible",))
                        html.Span("{{ item.kind }}", classes="text-caption text-medium-emphasis")
        with html.Div(classes="d-flex align-center mt-1", style="gap: 8px"):
            v3.VCheckbox(v_model=(n.volume_rendering,), v_show=(f"!{n.cine_visible}",),  # a cine frame has no 3-D
                         label="3-D volume rendering", density="compact", hide_details=True)
            # Any loaded heat map (ultrasound per frame, MRI volume) as a coloured layer over the image.
            v3.VCheckbox(v_model=(r.heatmap_visible,), v_show=(r.heatmap_available,), id="spineai-heatmap",
                         label="Heat map", density="compact", hide_details=True)
            v3.VBtn("Clear", size="small", variant="text", disabled=(disabled_expression,), click=self.clear_clicked)
        v3.VSelect(v_model=(n.layout_id,), items=(n.layout_ids,), label="Layout", density="compact",
                   hide_details=True, classes="mt-1")
        self.build_viewer_controls()

    def build_viewer_controls(self):
        """Mouse tool, window/level presets and readout, measurements."""
        n = self.typed.name
        with html.Div(classes="d-flex align-center mt-2", style="gap: 6px"):
            html.Span("Mouse", classes="text-caption text-medium-emphasis")
            with v3.VBtnToggle(v_model=(n.mouse_tool,), mandatory=True, density="compact", variant="outlined",
                               divided=True, id="spineai-mouse-tool"):
                for value, icon, title in MOUSE_TOOLS:
                    v3.VBtn(icon=icon, value=value, title=title, size="small", id=f"spineai-tool-{value}")
        html.Div(f"{{{{ {n.measure_hint} }}}}", id="spineai-measure-hint",
                 classes="text-caption text-medium-emphasis mt-1")
        # Always one line high: the views keep their size (and their pixel -> mm mapping) as it fills and empties.
        html.Div(f"{{{{ {n.measure_progress} }}}}", id="spineai-measure-progress", classes="text-caption",
                 style="min-height: 1.25rem; white-space: nowrap; overflow: hidden; text-overflow: ellipsis;")
        with html.Div(classes="d-flex align-center flex-wrap mt-1", style="gap: 4px"):
            html.Span(f"{{{{ {n.wl_text} || 'W/L' }}}}", id="spineai-wl-text", classes="text-caption mr-1",
                      style="min-width: 92px")
            for value, title in WL_BUTTONS:
                v3.VBtn(title, size="x-small", variant="tonal", id=f"spineai-wl-{value}",
                        click=(self.preset_clicked, f"['{value}']"))
        with html.Div(id="spineai-measurements", v_if=(f"{n.measurements}.length",), classes="mt-1"):
            with html.Div(v_for=f"m in {n.measurements}", key="m.id", classes="spineai-measurement text-body-2"):
                html.Span("{{ m.name }}: ", classes="text-medium-emphasis")
                html.Span("{{ m.text }}")
            v3.VBtn("Clear measurements", size="x-small", variant="text", id="spineai-measure-clear",
                    click=self.clear_measurements_clicked)

    def build_tables(self):
        n = self.typed.name
        with html.Div(v_for=f"table in {n.tables}", key="table.name", classes="mt-3 spineai-table"):
            html.Div("{{ table.name }}", classes="text-overline")
            with v3.VTable(density="compact", fixed_header=True, height=("table.rows.length > 8 ? 260 : undefined",)):
                with html.Thead(), html.Tr():
                    html.Th("{{ column }}", v_for="column in table.columns", key="column")
                with html.Tbody():
                    # A click centres the views on the level / vertebra / frame the row names.
                    with html.Tr(v_for="(row, r) in table.rows", key="r", click=(self.row_clicked, "[table.id, r]"),
                                 style="cursor: pointer"):
                        html.Td("{{ cell }}", v_for="(cell, c) in row", key="c")
