"""The side panel: Vuetify widgets bound to the state names the app updates.

Only layout and bindings live here; every button calls a method of the app
(``actions``). Elements carry ``spineai-*`` ids so browser tests and users'
scripts can find them.
"""

from trame.widgets import html
from trame.widgets import vuetify3 as v3

from SpineAILib.vocabulary import DEVICES

# State names and their initial values (the app owns the values; the panel reads them).
DEFAULT_STATE = {
    "load_path": "",
    "load_as": "auto",
    "load_series": None,
    "series_items": [],
    "load_message": "",
    "load_error": False,
    "busy": False,
    "items": [],
    "layout_id": "",
    "layout_ids": [],
    "volume_rendering": True,
    "cine_visible": False,
    "cine_name": "",
    "cine_playing": False,
    "cine_frame": 0,
    "cine_last": 0,
    "cine_time_ms": 0.0,
    "task": "lumbar-mri",
    "task_items": [],
    "device": "auto",
    "workflows_available": True,
    "task_running": False,
    "task_progress": 0,
    "task_status": "",
    "task_error": False,
    "results_path": "",
    "tables": [],
    # ultrasound review (SpineAILib.workflows.ultrasound.review) and the generic heat-map toggle
    "review_visible": False,
    "review_frame_text": "",
    "review_parts": [],
    "review_cursor": -1,
    "review_timeline": "",
    "review_message": "",
    "heatmap_available": False,
    "heatmap_visible": False,
}

LOAD_AS_ITEMS = [
    {"title": "auto", "value": "auto"},
    {"title": "image", "value": "image"},
    {"title": "segmentation", "value": "segmentation"},
]
DEVICE_ITEMS = list(DEVICES)
KIND_ICONS = {
    "volume": "mdi-cube-outline",
    "label map": "mdi-label-outline",
    "cine": "mdi-filmstrip",
    "segmentation": "mdi-shape-outline",
    "markups": "mdi-map-marker-outline",
    "table": "mdi-table",
}


def _heading(text):
    html.Div(text, classes="text-overline mt-3 mb-1", style="line-height: 1.6")


def _message_line(text_name, error_name, element_id):
    """One line of text: red for errors, grey otherwise; full text in the tooltip."""
    html.Div(
        f"{{{{ {text_name} }}}}",
        id=element_id,
        v_show=(text_name,),
        title=(text_name,),
        classes=(f"{error_name} ? 'text-error text-caption mt-1' : 'text-medium-emphasis text-caption mt-1'",),
        style="white-space: nowrap; overflow: hidden; text-overflow: ellipsis;",
    )


def _review(actions):
    """An ultrasound run's review under the cine player: the calls of the frame on screen,
    the timeline (a click jumps there) and the Best frame button."""
    with html.Div(v_show=("review_visible",), id="spineai-review", classes="mt-1"):
        with html.Div(id="spineai-cine-calls", classes="text-caption"):
            html.Span("{{ review_frame_text }} — ")
            html.Span(
                "{{ (k ? ' · ' : '') + part.text }}",
                v_for="(part, k) in review_parts",
                key="part.label",
                classes=(
                    "part.called ? (part.label === 'bad_quality' ? 'text-error font-weight-bold'"
                    " : 'text-success font-weight-bold') : 'text-medium-emphasis'",
                ),
            )
        with html.Div(style="position: relative", classes="mt-1", v_show=("review_timeline",)):
            html.Img(
                src=("review_timeline",),
                id="spineai-timeline",
                title="click: go to that time",
                style="width: 100%; display: block; cursor: pointer; background: white",
                click=(actions.seek_timeline, "[$event.offsetX / $event.target.clientWidth]"),
            )
            html.Div(
                id="spineai-timeline-cursor",
                v_show=("review_cursor >= 0",),
                style=(
                    "{position: 'absolute', top: 0, bottom: 0, width: '2px', background: '#e040fb',"
                    " left: (review_cursor * 100) + '%', pointerEvents: 'none'}",
                ),
            )
        with html.Div(classes="d-flex align-center mt-1", style="gap: 8px"):
            v3.VBtn(
                "Best frame",
                id="spineai-best-frame",
                size="small",
                variant="tonal",
                prepend_icon="mdi-star-outline",
                click=actions.best_frame,
            )
        _message_line("review_message", "false", "spineai-review-message")


def build_panel(actions, annotate=None):
    """The panel's content (call inside a navigation drawer); ``annotate`` draws the Annotate
    section (below the cine player)."""
    with html.Div(classes="pa-3", id="spineai-panel"):
        html.Div("SpineAI", classes="text-h6")
        html.Div("Spine imaging AI", classes="text-caption text-medium-emphasis")

        # -- Load --------------------------------------------------------------
        _heading("Load")
        v3.VTextField(
            v_model=("load_path",),
            id="spineai-load-path",
            label="File or DICOM folder on the server",
            density="compact",
            hide_details=True,
            clearable=True,
            __events=[("keyup_enter", "keyup.enter")],
            keyup_enter=(actions.load, "[load_path, load_as, load_series]"),
        )
        with html.Div(classes="d-flex align-center mt-2", style="gap: 8px"):
            v3.VSelect(
                v_model=("load_as",),
                items=("load_as_items", LOAD_AS_ITEMS),
                label="as",
                density="compact",
                hide_details=True,
                style="max-width: 160px",
            )
            # Values are passed with the click so the server never acts on a stale path.
            v3.VBtn(
                "Load",
                id="spineai-load-button",
                color="primary",
                loading=("busy",),
                disabled=("busy || !load_path",),
                click=(actions.load, "[load_path, load_as, load_series]"),
            )
        # Shown when a DICOM folder holds several series: the user picks one, then Load.
        v3.VSelect(
            v_model=("load_series",),
            v_show=("series_items.length",),
            items=("series_items",),
            id="spineai-series",
            label="Series in this folder",
            density="compact",
            hide_details=True,
            classes="mt-2",
        )
        _message_line("load_message", "load_error", "spineai-load-message")

        # -- What is loaded ----------------------------------------------------
        _heading("Loaded")
        with html.Div(id="spineai-loaded-list"):
            html.Div("nothing yet", v_if=("!items.length",), classes="text-caption text-medium-emphasis")
            with v3.VList(density="compact", v_if=("items.length",), classes="py-0", bg_color="transparent"):
                with v3.VListItem(
                    v_for="item in items",
                    key="item.id",
                    click=(actions.show_item, "[item.id]"),
                    classes="px-1",
                    min_height=28,
                ):
                    with html.Div(classes="d-flex align-center", style="gap: 6px"):
                        v3.VIcon(icon=("kind_icons[item.kind] || 'mdi-file-outline'",), size="small")
                        html.Span(
                            "{{ item.name }}",
                            classes=("item.visible ? 'text-body-2' : 'text-body-2 text-disabled'",),
                        )
                        v3.VSpacer()
                        v3.VIcon(icon="mdi-eye-off-outline", size="x-small", v_if=("!item.visible",))
                        html.Span("{{ item.kind }}", classes="text-caption text-medium-emphasis")
        with html.Div(classes="d-flex align-center mt-1", style="gap: 8px"):
            v3.VCheckbox(
                v_model=("volume_rendering",),
                v_show=("!cine_visible",),  # a cine frame has no 3-D rendering
                label="3-D volume rendering",
                density="compact",
                hide_details=True,
            )
            # Any loaded heat map (ultrasound per frame, MRI volume) as a coloured layer over the image.
            v3.VCheckbox(
                v_model=("heatmap_visible",),
                v_show=("heatmap_available",),
                id="spineai-heatmap",
                label="Heat map",
                density="compact",
                hide_details=True,
            )
            v3.VBtn("Clear", size="small", variant="text", disabled=("busy || task_running",), click=actions.clear)
        v3.VSelect(
            v_model=("layout_id",),
            items=("layout_ids",),
            label="Layout",
            density="compact",
            hide_details=True,
            classes="mt-1",
        )

        # -- Cine player ---------------------------------------------------------
        with html.Div(v_show=("cine_visible",), id="spineai-cine"):
            _heading("Cine")
            with html.Div(classes="d-flex align-center", style="gap: 6px"):
                v3.VBtn(
                    icon=("cine_playing ? 'mdi-pause' : 'mdi-play'",),
                    id="spineai-cine-play",
                    size="small",
                    variant="tonal",
                    click=actions.toggle_play,
                )
                v3.VSlider(
                    v_model=("cine_frame",),
                    id="spineai-cine-slider",
                    min=0,
                    max=("cine_last",),
                    step=1,
                    density="compact",
                    hide_details=True,
                )
            html.Div(
                "frame {{ cine_frame + 1 }} / {{ cine_last + 1 }} · {{ cine_time_ms.toFixed(1) }} ms",
                id="spineai-cine-frame",
                classes="text-caption",
            )
            _review(actions)

        if annotate is not None:
            annotate()

        # -- Workflows -----------------------------------------------------------
        _heading("Workflows")
        with html.Div(v_if=("workflows_available",)):
            v3.VSelect(
                v_model=("task",),
                items=("task_items",),
                id="spineai-task-select",
                label="Task",
                density="compact",
                hide_details=True,
            )
            with html.Div(classes="d-flex align-center mt-2", style="gap: 8px"):
                v3.VSelect(
                    v_model=("device",),
                    items=("device_items", DEVICE_ITEMS),
                    id="spineai-device-select",
                    label="Device",
                    density="compact",
                    hide_details=True,
                    style="max-width: 140px",
                )
                v3.VBtn(
                    "Run",
                    id="spineai-run-button",
                    color="primary",
                    loading=("task_running",),
                    disabled=("task_running || busy",),
                    click=(actions.run, "[task, device, load_path, load_series]"),
                )
            v3.VProgressLinear(
                model_value=("task_progress",),
                id="spineai-task-progress",
                color="primary",
                height=6,
                rounded=True,
                classes="mt-2",
            )
        _message_line("task_status", "task_error", "spineai-task-status")

        _heading("Load results")
        v3.VTextField(
            v_model=("results_path",),
            id="spineai-results-path",
            label="Output folder of a run",
            density="compact",
            hide_details=True,
            clearable=True,
            __events=[("keyup_enter", "keyup.enter")],
            keyup_enter=(actions.load_results, "[results_path]"),
        )
        v3.VBtn(
            "Load results",
            id="spineai-results-button",
            size="small",
            classes="mt-2",
            disabled=("busy || !results_path",),
            click=(actions.load_results, "[results_path]"),
        )

        # -- Tables --------------------------------------------------------------
        with html.Div(v_for="table in tables", key="table.name", classes="mt-3 spineai-table"):
            html.Div("{{ table.name }}", classes="text-overline")
            with v3.VTable(density="compact", fixed_header=True, height=("table.rows.length > 8 ? 260 : undefined",)):
                with html.Thead(), html.Tr():
                    html.Th("{{ column }}", v_for="column in table.columns", key="column")
                with html.Tbody():
                    # A click centres the views on the level / vertebra / frame the row names.
                    with html.Tr(
                        v_for="(row, r) in table.rows",
                        key="r",
                        click=(actions.jump_to_row, "[table.id, r]"),
                        style="cursor: pointer",
                    ):
                        html.Td("{{ cell }}", v_for="(cell, c) in row", key="c")
