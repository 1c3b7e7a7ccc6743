"""The Cine section: play / pause, the frame slider and time, and an ultrasound run's review
under it (the calls of the frame on screen, the timeline, Best frame)."""

from dataclasses import dataclass, field

from trame.widgets import html
from trame.widgets import vuetify3 as v3
from undo_stack import Signal

from SpineAILib.web.typed_state import FlatState
from SpineAILib.web.ui.panel_ui import heading, message_line


@dataclass
class CineState:
    cine_name: str = ""
    cine_playing: bool = False
    cine_frame: int = 0
    cine_last: int = 0
    cine_time_ms: float = 0.0


@dataclass
class ReviewState:
    """An ultrasound run's review (SpineAILib.workflows.ultrasound.review) and any heat map's toggle."""

    review_visible: bool = False
    review_frame_text: str = ""
    review_parts: list = field(default_factory=list)
    review_cursor: float = -1
    review_timeline: str = ""
    review_message: str = ""
    heatmap_available: bool = False
    heatmap_visible: bool = False


class CineUI:
    play_clicked = Signal()
    best_frame_clicked = Signal()
    timeline_clicked = Signal(float)  # where on the timeline, 0..1 of its width

    def __init__(self, server):
        self.typed = FlatState(server.state, CineState)
        self.review = FlatState(server.state, ReviewState)

    def build(self, visible_name):
        """``visible_name``: the state entry that says a cine is shown."""
        n = self.typed.name
        with html.Div(v_show=(visible_name,), id="spineai-cine"):
            heading("Cine")
            with html.Div(classes="d-flex align-center", style="gap: 6px"):
                v3.VBtn(icon=(f"{n.cine_playing} ? 'mdi-pause' : 'mdi-play'",), id="spineai-cine-play", size="small",
                        variant="tonal", click=self.play_clicked)
                v3.VSlider(v_model=(n.cine_frame,), id="spineai-cine-slider", min=0, max=(n.cine_last,), step=1,
                           density="compact", hide_details=True)
            html.Div(f"frame {{{{ {n.cine_frame} + 1 }}}} / {{{{ {n.cine_last} + 1 }}}} · "
                     f"{{{{ {n.cine_time_ms}.toFixed(1) }}}} ms", id="spineai-cine-frame", classes="text-caption")
            self._review()

    def _review(self):
        r = self.review.name
        with html.Div(v_show=(r.review_visible,), id="spineai-review", classes="mt-1"):
            with html.Div(id="spineai-cine-calls", classes="text-caption"):
                html.Span(f"{{{{ {r.review_frame_text} }}}} — ")
                html.Span(
                    "{{ (k ? ' · ' : '') + part.text }}", v_for=f"(part, k) in {r.review_parts}", key="part.label",
                    classes=("part.called ? (part.label === 'bad_quality' ? 'text-error font-weight-bold'"
                             " : 'text-success font-weight-bold') : 'text-medium-emphasis'",),
                )
            with html.Div(style="position: relative", classes="mt-1", v_show=(r.review_timeline,)):
                html.Img(src=(r.review_timeline,), id="spineai-timeline", title="click: go to that time",
                         style="width: 100%; display: block; cursor: pointer; background: white",
                         click=(self.timeline_clicked, "[$event.offsetX / $event.target.clientWidth]"))
                html.Div(id="spineai-timeline-cursor", v_show=(f"{r.review_cursor} >= 0",),
                         style=("{position: 'absolute', top: 0, bottom: 0, width: '2px', background: '#e040fb',"
                                f" left: ({r.review_cursor} * 100) + '%', pointerEvents: 'none'}}",))
            with html.Div(classes="d-flex align-center mt-1", style="gap: 8px"):
                v3.VBtn("Best frame", id="spineai-best-frame", size="small", variant="tonal",
                        prepend_icon="mdi-star-outline", click=self.best_frame_clicked)
            message_line(r.review_message, "false", "spineai-review-message")
