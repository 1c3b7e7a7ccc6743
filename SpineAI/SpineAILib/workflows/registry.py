"""The workflows SpineAI offers, by task name: every front end offers the same choices."""

from SpineAILib.errors import SpineAIError
from SpineAILib.workflows.cervical.workflow import CervicalCtWorkflow
from SpineAILib.workflows.lumbar.workflow import LumbarMriWorkflow
from SpineAILib.workflows.ultrasound.workflow import UltrasoundWorkflow

WORKFLOWS = {w.name: w for w in (UltrasoundWorkflow(), LumbarMriWorkflow(), CervicalCtWorkflow())}


def get_workflow(name):
    try:
        return WORKFLOWS[name]
    except KeyError:
        raise SpineAIError(f"unknown task {name!r}; choose one of: {', '.join(WORKFLOWS)}") from None
