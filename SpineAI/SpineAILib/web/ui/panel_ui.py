"""The page: the side panel (sections top to bottom) beside the views.

``build_page(server, layout_manager, sections)`` draws it; each section is a UI object of
its own module (``load_ui``, ``views_ui``, ``cine_ui``, ``annotate_ui``, ``dataset_ui``,
``workflow_ui``) whose signals the app connects to the logics.
"""

from dataclasses import dataclass

from trame.ui.vuetify3 import VAppLayout
from trame.widgets import html
from trame.widgets import vuetify3 as v3


@dataclass
class PageState:
    trame__title: str = "SpineAI"


def heading(text):
    html.Div(text, classes="text-overline mt-3 mb-1", style="line-height: 1.6")


def message_line(text_name, error_name, element_id):
    """One line of text: red for errors, grey otherwise; full text in the tooltip."""
    html.Div(
        f"{{{{ {text_name} }}}}",
        id=element_id,
        v_show=(text_name,),
        title=(text_name,),
        classes=(f"{error_name} ? 'text-error text-caption mt-1' : 'text-medium-emphasis text-caption mt-1'",),
        style="white-space: nowrap; overflow: hidden; text-overflow: ellipsis;",
    )


def row(gap=6, classes="d-flex align-center mt-1"):
    return html.Div(classes=classes, style=f"gap: {gap}px")


def build_page(server, layout_manager, sections):
    """The app's layout; ``sections``: UI objects with ``build()``, drawn in this order in the panel."""
    with VAppLayout(server, full_height=True) as layout:
        layout.root.theme = "dark"
        with v3.VNavigationDrawer(location="right", width=380, permanent=True):
            with html.Div(classes="pa-3", id="spineai-panel"):
                html.Div("SpineAI", classes="text-h6")
                html.Div("Spine imaging AI", classes="text-caption text-medium-emphasis")
                for section in sections:
                    section()
        with v3.VMain(), html.Div(classes="d-flex flex-row", style="height: 100vh"):
            layout_manager.initialize_layout_grid(layout)
    return layout
