"""Running a task: the public entry points every front end uses.

``run_task`` runs a workflow (``workflows.registry``) in this process with the output
contract (runner.py); ``run_task_isolated`` runs it in a child process
(``runtime.child``), for long-running servers.
"""


def run_task(task, input_path, out_dir, **options):
    """Run ``task`` on ``input_path`` and write its results to ``out_dir`` (see runner.run_task)."""
    from SpineAILib.tasks.runner import run_task as _run

    return _run(task, input_path, out_dir, **options)


def run_task_isolated(task, input_path, out_dir, **options):
    """run_task in a child process (see runtime/child.py)."""
    from SpineAILib.runtime.child import run_task_isolated as _run

    return _run(task, input_path, out_dir, **options)
