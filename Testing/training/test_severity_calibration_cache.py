"""The severity calibration's per-case cache (SpineAITraining.lumbar.severity.calibrate) round-trips
what the grading path returns, and loads no pickle: a file planted in the cache folder runs no code."""

import numpy as np
import pytest


def test_cache_round_trips_the_grading_results_without_pickles(tmp_path):
    from SpineAITraining.lumbar.severity.calibrate import _load_cached, _save_cached

    case = {"case": "vb2_02", "notes": ["T2-like"], "kinds": ["sagittal_t2"], "canal": {"l1_l2": np.arange(3.0)},
            "discs": [{"level": "L1/L2", "visible": True, "centre": np.array([1.5, -2.0, 3.25]), "reason": None}],
            "rows": [{"grade": "Moderate", "moderate": 0.51, "assessed": True}],
            "entries": [("spinal_canal_stenosis", "l1_l2", np.ones((3, 4, 4), np.float32), "sagittal_t2")]}
    _save_cached(tmp_path / "vb2_02", case)
    back = _load_cached(tmp_path / "vb2_02")
    assert back["entries"][0][:2] == ("spinal_canal_stenosis", "l1_l2") and isinstance(back["entries"][0], tuple)
    assert back["entries"][0][2].dtype == np.float32 and np.array_equal(back["entries"][0][2], case["entries"][0][2])
    assert np.array_equal(back["discs"][0]["centre"], case["discs"][0]["centre"]) and back["discs"][0]["reason"] is None
    assert back["rows"] == case["rows"] and back["notes"] == case["notes"]


def test_a_planted_object_array_is_refused(tmp_path):
    from SpineAITraining.lumbar.severity.calibrate import _load_cached

    np.savez(tmp_path / "evil.npz", a0=np.array([{"boom": 1}], dtype=object))
    (tmp_path / "evil.json").write_text('{"__array__": "a0"}')
    with pytest.raises(ValueError, match="pickle"):
        _load_cached(tmp_path / "evil")
