"""The synthetic data-set generators never write into, or delete from, a folder of the user's."""

import json
import os

import pytest

from SpineAILib.errors import OutputError
from SpineAITraining.common.dataset_folder import TRUTH_FILE, prepare_output

GENERATOR = "SpineAITraining.lumbar.severity.generator"
OWNED = ("train_images", "train.csv", TRUTH_FILE)


def test_a_folder_of_the_users_is_refused_and_left_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "train.csv").write_text("my own table")  # what the old check took for a generator's output
    with pytest.raises(OutputError, match="holds no data set written by"):
        prepare_output(tmp_path, GENERATOR, True, OWNED)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "train.csv"]
    (tmp_path / TRUTH_FILE).write_text(json.dumps({"generator": "SpineAITraining.cervical.generator"}))
    with pytest.raises(OutputError, match="holds no data set written by"):  # another generator's set
        prepare_output(tmp_path, GENERATOR, True, OWNED)


def test_its_own_output_is_replaced_only_with_overwrite_and_links_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the generator's")
    out = tmp_path / "set"
    assert prepare_output(out, GENERATOR, False, OWNED) == out and out.is_dir()  # new: made
    (out / TRUTH_FILE).write_text(json.dumps({"generator": GENERATOR}))
    (out / "train.csv").write_text("old")
    os.symlink(outside, out / "train_images")  # a crafted set: its image folder is a link elsewhere
    (out / "README.txt").write_text("a file the generator does not write")
    with pytest.raises(OutputError, match="--overwrite"):
        prepare_output(out, GENERATOR, False, OWNED)
    prepare_output(out, GENERATOR, True, OWNED)
    assert sorted(p.name for p in out.iterdir()) == ["README.txt"]
    assert (outside / "keep.txt").read_text() == "not the generator's"


def test_the_generator_command_refuses_a_non_empty_folder_in_one_line(tmp_path, capsys):
    from SpineAILib.errors import run_reporting_errors
    from SpineAITraining.lumbar.severity.generator import main

    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8")
    code = run_reporting_errors("generator", lambda: main([str(tmp_path), "--studies", "1"]))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nothing was written" in err[0]
    assert [p.name for p in tmp_path.iterdir()] == ["photo.jpg"]
