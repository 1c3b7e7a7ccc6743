"""Output folders are complete or absent, and never clobber earlier results."""

import pytest

from SpineAILib.errors import OutputError
from SpineAILib.outputs import MARKER, check_output_folder, staged_output_folder, write_text_atomic


def test_success_moves_everything_into_place(tmp_path):
    out = tmp_path / "results"
    with staged_output_folder(out) as staging:
        (staging / "a.txt").write_text("a")
        assert not out.exists()  # nothing visible until the end
    assert (out / "a.txt").read_text() == "a"
    assert [p.name for p in tmp_path.iterdir()] == ["results"]


def test_failure_leaves_nothing_behind(tmp_path):
    out = tmp_path / "results"
    with pytest.raises(RuntimeError):
        with staged_output_folder(out) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("model crashed")
    assert list(tmp_path.iterdir()) == []


def test_existing_results_are_refused_then_replaced_only_with_force(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "annotations.mrk.json").write_text("precious")
    with pytest.raises(OutputError, match="--force"):
        check_output_folder(out)
    with pytest.raises(OutputError, match="not SpineAI results"):  # --force replaces only results folders
        check_output_folder(out, force=True)
    (out / MARKER).write_text("")
    # A failed forced run keeps the old results.
    with pytest.raises(RuntimeError):
        with staged_output_folder(out, force=True):
            raise RuntimeError("boom")
    assert (out / "annotations.mrk.json").read_text() == "precious"
    with staged_output_folder(out, force=True) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_empty_existing_folder_is_fine(tmp_path):
    (tmp_path / "empty").mkdir()
    assert check_output_folder(tmp_path / "empty") == (tmp_path / "empty").absolute()


def test_a_file_in_the_way_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        check_output_folder(tmp_path / "f")


def test_atomic_text_write(tmp_path):
    path = write_text_atomic(tmp_path / "r.json", "{}")
    assert path.read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
