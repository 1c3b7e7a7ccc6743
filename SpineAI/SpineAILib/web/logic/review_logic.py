"""An ultrasound run's review over the cine (calls of the frame on screen, timeline, Best frame;
all decided by ``SpineAILib.workflows.ultrasound.review.CineReview``), the heat-map toggle of
any run's heat map (ultrasound per frame, MRI volume) and the Results section (warnings, grade
grid, fractures, calls, vertebral bodies, legend: ``SpineAILib.presentation.present``)."""

from SpineAILib import presentation
from SpineAILib.scene import overlays
from SpineAILib.web.logic.base_logic import BaseLogic
from SpineAILib.web.typed_state import FlatState
from SpineAILib.web.ui.cine_ui import ReviewState
from SpineAILib.web.ui.results_ui import ResultsState


class ReviewLogic(BaseLogic[ReviewState]):
    def __init__(self, server, views, cine):
        super().__init__(server, ReviewState)
        self.views = views
        self.cine = cine
        self.review = None  # CineReview of the ultrasound run shown over the cine
        self.heat_node = None  # the heat-map layer the "Heat map" toggle shows
        self.results = FlatState(server.state, ResultsState)  # the Results section's view of the run shown
        views.cine_shown.connect(self._on_cine_shown)
        cine.frame_shown.connect(self.update)
        self.bind_changes({self.name.heatmap_visible: self._on_heatmap_visible})

    def set_ui(self, ui):
        ui.best_frame_clicked.connect(self.best_frame)
        ui.timeline_clicked.connect(self.seek_timeline)

    def forget(self):
        """Results of another input do not belong over this one."""
        self.review, self.heat_node = None, None
        self.typed.update(review_visible=False, heatmap_available=False, heatmap_visible=False)
        self.results.update(result_view={})

    def show_results(self, review, heat_layers, folder=None):
        """A run's results are loaded: its heat map (the last layer), its review, if it has them, and
        the Results section (every warning, the grade grid, ...) for its folder."""
        if folder is not None:
            self.results.update(result_view=presentation.present(folder))
        if heat_layers:
            self.heat_node = heat_layers[-1]
            self.data.heatmap_available = True
            self.apply_heatmap()
        self.set_review(review)

    def vertebra_centre(self, index):
        """Where row ``index`` of the Results' vertebral-body table centres the views (RAS), or None."""
        bodies = (self.results.data.result_view or {}).get("vertebral_bodies") or {}
        rows = bodies.get("rows") or []
        try:
            row = rows[int(index)] if 0 <= int(index) < len(rows) else {}
        except (TypeError, ValueError):
            row = {}
        centre = row.get("centre_ras")
        return (row.get("name", ""), tuple(float(c) for c in centre)) if centre else (row.get("name", ""), None)

    def set_review(self, review):
        """Show the per-frame calls, timeline and Best frame for a run on the cine shown now."""
        shown = self.views.cine
        if review is None or shown is None or not review.matches(shown.n_frames):
            self.review = None
            self.data.review_visible = False
            return
        self.review = review
        self.typed.update(review_visible=True, review_timeline=review.timeline_data_url(),
                          review_message=review.overview())
        self.update(shown.frame)

    def update(self, frame):
        if self.review is None:
            return
        cursor = self.review.cursor_fraction(frame)
        self.typed.update(review_frame_text=self.review.frame_text(frame), review_parts=self.review.parts(frame),
                          review_cursor=-1 if cursor is None else cursor)

    def _on_cine_shown(self):
        self.update(self.views.cine.frame)
        self.apply_heatmap()  # showing the cine reset the views' foreground layer

    def best_frame(self):
        """Best frame button: the next of the run's best frames (the shared review decides)."""
        if self.review is None or self.views.cine is None:
            return
        index, message = self.review.next_best(self.views.cine.frame)
        if index is not None:
            self.cine.jump_to_frame(index)
        self.push(review_message=message)

    def seek_timeline(self, x):
        """A click on the timeline at ``x`` (0..1 of its width): the frame at that time."""
        if self.review is None or self.views.cine is None:
            return
        index = self.review.frame_at_fraction(float(x))
        if index is not None:
            self.cine.jump_to_frame(index)

    def apply_heatmap(self):
        if self.heat_node is None or not self.views.scene.IsNodePresent(self.heat_node):
            return
        overlays.set_heatmap_visible(self.views.scene_ctx, self.heat_node, bool(self.data.heatmap_visible))
        self.views.render_slice_views()

    def _on_heatmap_visible(self, heatmap_visible):
        self.apply_heatmap()
