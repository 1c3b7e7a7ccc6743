"""The Results section (under Workflows): the run's warnings in full, the grade grid, the fracture
table, the ultrasound calls with their thresholds, the vertebral-body table (spine-ct) with the L1
bone-density line, the heat map's legend and the measurements. What it shows is decided by
``SpineAILib.presentation`` (shared with the desktop module); this only draws ``result_view``.
A click on a vertebral-body row sends ``vertebra_clicked(row index)``: the views centre on it."""

from dataclasses import dataclass, field

from trame.widgets import html
from undo_stack import Signal

from SpineAILib.web.typed_state import FlatState
from SpineAILib.web.ui.panel_ui import heading

CELL = ("{background: c.colour, color: 'white', textAlign: 'center', borderRadius: '3px', padding: '1px 2px',"
        " fontSize: '11px', cursor: 'help', outline: c.estimated ? '2px dashed #ffd54f' : 'none'}")


@dataclass
class ResultsState:
    result_view: dict = field(default_factory=dict)  # presentation.present(run folder), {} when none is shown


class ResultsUI:
    vertebra_clicked = Signal(int)  # a row of the vertebral-body table: centre the views on that vertebra

    def __init__(self, server):
        self.typed = FlatState(server.state, ResultsState)

    def build(self):
        v = self.typed.name.result_view
        with html.Div(v_if=(f"{v} && {v}.folder",), id="spineai-results"):
            heading("Results")
            html.Div(f"{{{{ {v}.task }}}}: {{{{ {v}.message }}}}", v_show=(f"{v}.message",),
                     id="spineai-results-message", classes="text-body-2", style="white-space: normal")
            # Every warning in full: nothing is cut to one line.
            with html.Div(v_if=(f"{v}.warnings && {v}.warnings.length",), id="spineai-warnings", classes="mt-1 pa-2",
                          style="background: #4e342e; border-left: 4px solid #ffb300; border-radius: 4px;"
                                " white-space: normal; color: #ffe0b2; font-size: 12px"):
                html.Div(f"⚠ {{{{ {v}.warnings.length }}}} warning{{{{ {v}.warnings.length > 1 ? 's' : '' }}}}",
                         classes="font-weight-bold")
                html.Div("{{ w }}", v_for=f"(w, i) in {v}.warnings", key="i", classes="spineai-warning mt-1")
            # what the lumbar level names rest on: counted up from S1, or the column's own run (presentation.level_naming)
            with html.Div(v_if=(f"{v}.naming",), id="spineai-level-naming", classes="mt-1 text-body-2",
                          style="white-space: normal"):
                html.B("Level names: ")
                html.Span(f"{{{{ {v}.naming.text }}}}")
                html.Span(f" ({{{{ {v}.naming.cross_check }}}})", v_if=(f"{v}.naming.cross_check",))
                html.Div("{{ n }}", v_for=f"(n, i) in ({v}.naming.notes || [])", key="i",
                         classes="spineai-naming-note text-caption text-medium-emphasis")
            self._vertebral_bodies(v)
            self._grid(v)
            self._fractures(v)
            with html.Div(v_if=(f"{v}.calls && {v}.calls.length",), id="spineai-calls", classes="mt-2 text-caption"):
                with html.Div(v_for=f"(c, i) in {v}.calls", key="i", title=("c.title",), style="white-space: normal"):
                    html.B("{{ c.name }}: ")
                    html.Span("{{ c.call }}", style=("{color: c.colour}",), classes="font-weight-bold")
                    html.Span(" — {{ c.text }}")
            self._legend(v)
            with html.Div(v_if=(f"{v}.measurements && {v}.measurements.length",), id="spineai-measurements",
                          classes="mt-2 text-caption"):
                html.Div("Measurements", classes="text-overline", style="line-height: 1.4")
                html.Div("{{ m.name }}: {{ m.text }}", v_for=f"(m, i) in {v}.measurements", key="i")

    def _vertebral_bodies(self, v):
        b = f"{v}.vertebral_bodies"
        with html.Div(v_if=(b,), classes="mt-2"):
            d = f"{b}.bone_density"
            with html.Div(v_if=(d,), id="spineai-bone-density", classes="pa-1 text-caption",
                          style=(f"{{borderLeft: '4px solid ' + {d}.colour, whiteSpace: 'normal', userSelect: 'text'}}",)):
                html.B("Bone density: ")
                html.Span(f"{{{{ {d}.flag }}}}", v_if=(f"{d}.flag",), classes="spineai-bone-density-flag mr-1",
                          style=(f"{{background: {d}.colour, color: 'white', borderRadius: '3px', padding: '0 4px'}}",))
                html.Span(f"{{{{ {d}.text }}}}", classes="spineai-bone-density-text",
                          __properties=[("data_flag", "data-flag")], data_flag=(f"{d}.flag || ''",))
                html.Div(f"{{{{ {d}.thresholds }}}} — {{{{ {d}.source }}}}", v_if=(f"{d}.thresholds",),
                         classes="text-medium-emphasis", style="font-size: 10px")
            with html.Div(v_if=(f"{b}.rows && {b}.rows.length",), classes="mt-1"):
                html.Div("Vertebral bodies (click a row: the views centre on it)", classes="text-overline",
                         style="line-height: 1.4")
                with html.Table(id="spineai-vertebral-bodies",
                                style="width: 100%; table-layout: fixed; border-spacing: 0 2px; font-size: 11px"):
                    with html.Thead(), html.Tr(classes="text-medium-emphasis"):
                        for title, width in (("vertebra", "72px"), ("heights", "auto"), ("Genant", "64px"),
                                             ("HU", "52px")):
                            html.Th(title, style=f"width: {width}; text-align: left; font-weight: normal")
                    with html.Tbody():
                        with html.Template(v_for=f"(r, i) in {b}.rows", key="i"):
                            with html.Tr(classes="spineai-vertebra-row", title=("r.title",),
                                         click=(self.vertebra_clicked, "[i]"),
                                         __properties=[("data_vertebra", "data-vertebra")], data_vertebra=("r.name",),
                                         style=("{cursor: r.centre_ras ? 'pointer' : 'default'}",)):
                                html.Td("{{ r.name }}", classes="font-weight-bold spineai-vertebra-name",
                                        style="white-space: nowrap; overflow: hidden; text-overflow: ellipsis")
                                html.Td("{{ r.heights }}", classes="spineai-vertebra-heights")
                                html.Td("{{ r.grade_text }}", classes="spineai-vertebra-genant",
                                        style=("{background: r.colour, color: 'white', textAlign: 'center', "
                                               "borderRadius: '3px', padding: '0 4px'}",))
                                html.Td("{{ r.hu }}", classes="spineai-vertebra-hu", style="text-align: right; padding-right: 4px")
                            with html.Tr(v_if=("r.notes",), classes="spineai-vertebra-notes"):
                                html.Td("{{ r.notes }}", colspan=4, classes="text-medium-emphasis",
                                        style="white-space: normal; font-size: 10px; padding-left: 12px")
                with html.Div(classes="d-flex flex-wrap mt-1 text-caption", style="gap: 8px"):
                    html.Span("Genant:", classes="text-medium-emphasis")
                    with html.Span(v_for=f"g in {b}.legend", key="g.grade"):
                        html.Span("\u00a0", style=("{background: g.colour, borderRadius: '2px', padding: '0 5px'}",))
                        html.Span(" {{ g.text }}")
            p = f"{b}.picture"
            with html.Div(v_if=(p,), classes="mt-2"):
                html.Div(f"{{{{ {p}.caption }}}}", classes="text-caption text-medium-emphasis", style="white-space: normal")
                html.Img(id="spineai-heights-picture", src=(f"{p}.data_url",), alt="body heights",
                         style="width: 100%; border-radius: 3px")

    @staticmethod
    def _grid(v):
        g = f"{v}.grid"
        with html.Div(v_if=(g,), id="spineai-grade-grid", classes="mt-2"):
            # a research model's grades (presentation.research_note): the note above, the cells greyed by their colour
            html.Div(f"{{{{ {g}.research_note }}}}", v_if=(f"{g}.research_note",), id="spineai-research-note",
                     classes="mb-1 pa-1 text-caption",
                     style="background: #424242; color: #e0e0e0; border-left: 4px solid #9e9e9e; border-radius: 4px;"
                           " white-space: normal; user-select: text")
            with html.Div(style="display: grid; grid-template-columns: 44px repeat(5, 1fr); gap: 2px;"
                                " font-size: 11px; align-items: center"):
                html.Div("level", classes="text-medium-emphasis")
                html.Div("{{ col.title }}", v_for=f"col in {g}.columns", key="col.key", title=("col.long",),
                         classes="text-medium-emphasis", style="text-align: center; overflow: hidden")
                with html.Template(v_for=f"row in {g}.rows", key="row.level"):
                    html.Div("{{ row.level }}", classes="font-weight-bold")
                    html.Div("{{ c.text }}", v_for="(c, k) in row.cells", key="k", title=("c.title",),
                             classes="spineai-grade-cell", style=(CELL,))
            html.Div("{{ row.level }} not assessed: {{ row.reason }}", v_for=f"row in {g}.collapsed", key="row.level",
                     classes="spineai-not-assessed text-caption text-medium-emphasis mt-1", style="white-space: normal")
            with html.Div(classes="d-flex flex-wrap mt-1 text-caption", style="gap: 8px"):
                with html.Span(v_for=f"c in {g}.legend", key="c.grade"):
                    html.Span("{{ c.text }}", style=(CELL,))
                    html.Span(" {{ c.grade }}")

    @staticmethod
    def _fractures(v):
        f = f"{v}.fractures"
        with html.Div(v_if=(f,), id="spineai-fractures", classes="mt-2 text-caption"):
            with html.Div(v_for=f"(r, i) in {f}.rows", key="i", title=("r.title",), classes="d-flex", style="gap: 8px"):
                html.B("{{ r.name }}", style="min-width: 56px")
                html.Span("{{ r.call }}", style=("{color: r.colour}",), classes="font-weight-bold")
                html.Span("{{ r.text }}", classes="text-medium-emphasis")
            html.Div("{{ c.names }} — {{ c.reason }}", v_for=f"(c, i) in {f}.collapsed", key="i",
                     classes="spineai-not-assessed text-medium-emphasis", style="white-space: normal")

    @staticmethod
    def _legend(v):
        h = f"{v}.heatmap"
        with html.Div(v_if=(h,), id="spineai-heatmap-legend", classes="mt-2 text-caption"):
            with html.Div(classes="d-flex align-center", style="gap: 6px"):
                html.Span(f"{{{{ {h}.low }}}}")
                html.Div(style=(f"{{flex: 1, height: '10px', borderRadius: '2px', background: {h}.gradient}}",),
                         classes="spineai-legend-bar")
                html.Span(f"{{{{ {h}.high }}}}")
            html.Div(f"{{{{ {h}.caption }}}}", classes="text-medium-emphasis")
            html.Div(f"{{{{ {h}.note }}}}", v_show=(f"{h}.note",), id="spineai-heatmap-note",
                     style="white-space: normal; font-style: italic")
