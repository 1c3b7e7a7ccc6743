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


def test_the_spine_ct_evaluation_page_rendered_later_says_the_run_s_own_command(tmp_path, capsys):
    """``evaluate_rules --render`` writes the page of an earlier run: its command and seeds are that run's (kept in
    the JSON), not the defaults of the render call; a JSON it did not write is one line and exit 2."""
    import json

    from SpineAITraining.spine_ct.evaluate_rules import main

    report = tmp_path / "run.json"
    main(["--phantoms", "0", "--first-seed", "1700000", "--field-of-view", "abdomen", "--plant-compression",
          "--out", str(report)])  # fmt: skip
    capsys.readouterr()
    page = tmp_path / "page.md"
    main(["--render", str(report), "--markdown", str(page)])
    assert ("evaluate_rules --phantoms 0 --first-seed 1700000 --field-of-view abdomen --plant-compression`"
            in page.read_text())
    crafted = {"object": {}, "list": [1], "options": dict(json.loads(report.read_text()), options={"phantoms": "24"})}
    for name, content in crafted.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(content))
        code = run_reporting_errors("evaluate_rules", lambda: main(["--render", str(path), "--markdown", str(tmp_path / "x.md")]))
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "earlier --out" in err[0], (name, err)
    assert not (tmp_path / "x.md").exists()
