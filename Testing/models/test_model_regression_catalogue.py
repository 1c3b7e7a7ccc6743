"""The published numbers agree with what each bundle recorded about itself.

Models.json (what `spineai models` and the README show) lists metrics per bundle; each must be a
metric of the bundle's own metadata.json (same value to the 4th decimal), and the version must
match, so a retrained bundle cannot ship with the old numbers beside it. The regression tests
(test_model_regression_*.py) then hold every bundle to those numbers on a small evaluation set.
"""

import json

import pytest
from model_regression import REPO, SHIPPED_MODELS

CATALOGUE = json.loads((REPO / "SpineAI" / "Resources" / "Models.json").read_text(encoding="utf-8"))
FOLDERS = sorted(p.name for p in SHIPPED_MODELS.iterdir() if (p / "metadata.json").is_file())


def test_every_shipped_bundle_is_catalogued_and_has_a_regression_test():
    catalogued = sorted(e["path"].split("/")[-1] for e in CATALOGUE["models"])
    assert catalogued == FOLDERS
    covered = set()
    for path in [*(REPO / "Testing" / "models").glob("test_model_regression_*.py"), REPO / "Testing" / "models" / "model_regression.py"]:
        text = path.read_text(encoding="utf-8")
        covered |= {f for f in FOLDERS if f'bundle_dir("{f}")' in text}
    assert covered == set(FOLDERS), set(FOLDERS) - covered


@pytest.mark.parametrize("entry", CATALOGUE["models"], ids=lambda e: e["bundle_id"])
def test_catalogue_metrics_are_the_bundles_own(entry):
    meta = json.loads((REPO / "SpineAI" / "Resources" / entry["path"] / "metadata.json").read_text(encoding="utf-8"))
    assert meta["bundle_id"] == entry["bundle_id"] and meta["version"] == entry["version"] and meta["task"] == entry["task"]
    assert entry["metrics"], "a shipped bundle publishes at least one metric"
    for published in entry["metrics"]:
        name = published["name"]
        candidates = [m["value"] for m in meta["metrics"] if m["name"] in (name, name.replace("_heldout_machine", ""))]
        assert any(abs(v - published["value"]) <= 5e-4 for v in candidates), (name, published["value"], candidates)
