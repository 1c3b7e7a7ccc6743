"""The research scripts (`python -m SpineAITraining...`) end a user's mistake in one line and exit 2, like the CLI:
no traceback, and no empty results with exit 0 for a folder that holds no case."""

import pytest
from conftest import REPO

from SpineAILib.errors import run_reporting_errors

LEVEL_BUNDLE = REPO / "SpineAI" / "Resources" / "Models" / "lumbar-mri-vertebrae"


@pytest.mark.parametrize("module, args, fragment", [
    ("SpineAITraining.lumbar.evaluate_disc_estimate", ["--data", "{empty}"], "no case found there"),
    ("SpineAITraining.lumbar.sacrum_labels", ["--data", "{empty}", "--out", "{empty}/labels"], "no case found there"),
    ("SpineAITraining.lumbar.evaluate_levels", ["--bundle", str(LEVEL_BUNDLE), "--data", "{empty}"], "no test case"),
    ("SpineAITraining.lumbar.evaluate_levels", ["--bundle", "{empty}/none", "--data", "{empty}"], "does not exist"),
    ("SpineAITraining.lumbar.stress_test", ["--data", "{empty}"], "no test case found there"),
    ("SpineAITraining.spine_ct.evaluate_rules", ["--render", "{empty}/x.json", "--markdown", "{empty}/x.md"], "no such file"),
])  # fmt: skip
def test_a_wrong_folder_is_one_line_and_exit_2(tmp_path, capsys, module, args, fragment):
    import importlib

    main = importlib.import_module(module).main
    argv = [a.replace("{empty}", str(tmp_path)) for a in args]
    code = run_reporting_errors(module.rsplit(".", 1)[-1], lambda: main(argv))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "labels").exists()  # nothing written for a folder without cases
