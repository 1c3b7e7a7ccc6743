"""The workflows SpineAI offers, by task name: every front end offers the same choices."""

from SpineAILib.errors import SpineAIError
from SpineAILib.workflows.cervical import workflow as cervical
from SpineAILib.workflows.lumbar import workflow as lumbar
from SpineAILib.workflows.spine_ct import workflow as spine_ct
from SpineAILib.workflows.ultrasound import workflow as ultrasound

WORKFLOWS = {w.name: w for w in (ultrasound.WORKFLOW, lumbar.WORKFLOW, cervical.WORKFLOW, spine_ct.WORKFLOW)}


def get_workflow(name):
    try:
        return WORKFLOWS[name]
    except KeyError:
        raise SpineAIError(f"unknown task {name!r}; choose one of: {', '.join(WORKFLOWS)}") from None
