"""Issue 17, rows 6 and 7: one run at a time per --out, --force replaces only SpineAI results,
a symlinked --out is refused, and staging folders of a killed run are cleaned by the next one."""

import subprocess
import sys
import textwrap

import pytest
from hostile_files import assert_refused, cli

from SpineAILib.outputs import MARKER, staged_output_folder


def run_args(tmp_path, out, *more):
    # the refusals come before the input is read: a missing input would be said after them
    return ("run", "lp-ultrasound", tmp_path / "no-such-input.dcm", "--out", out, *more)


def test_force_never_replaces_a_folder_that_holds_no_results(tmp_path, capsys):
    out = tmp_path / "thesis"
    (out / "chapters").mkdir(parents=True)
    (out / "thesis.docx").write_text("precious")
    (out / "chapters" / "one.docx").write_text("precious")
    assert_refused(*cli(capsys, *run_args(tmp_path, out, "--force")), "not SpineAI results")
    assert (out / "thesis.docx").read_text() == "precious" and (out / "chapters" / "one.docx").is_file()


def test_force_replaces_a_results_folder(tmp_path):
    out = tmp_path / "R"
    with staged_output_folder(out) as staging:
        (staging / "report.json").write_text("{}")
    assert (out / MARKER).is_file()
    with staged_output_folder(out, force=True) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "new.txt"]


def test_a_symlinked_out_is_refused(tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert_refused(*cli(capsys, *run_args(tmp_path, tmp_path / "link")), "symbolic link")
    assert (tmp_path / "link").is_symlink() and list(real.iterdir()) == []


def test_a_second_run_into_the_same_out_is_refused_while_the_first_runs(tmp_path, capsys):
    out = tmp_path / "R"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from SpineAILib.outputs import staged_output_folder
        with staged_output_folder({str(out)!r}) as staging:
            (staging / "first.txt").write_text("first")
            print("staging", flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "staging"
        assert_refused(*cli(capsys, *run_args(tmp_path, out)), "another SpineAI run")
        assert_refused(*cli(capsys, *run_args(tmp_path, out, "--force")), "another SpineAI run")
        with pytest.raises(Exception, match="another SpineAI run"):
            with staged_output_folder(out, force=True):
                pass
    finally:
        holder.stdin.write("\n")
        holder.stdin.close()
        assert holder.wait(timeout=60) == 0
    assert (out / "first.txt").read_text() == "first"  # the first run's results, not replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["R"]  # its lock file went with it


def test_a_killed_runs_lock_is_released_by_the_kernel(tmp_path):
    out = tmp_path / "R"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from SpineAILib.outputs import output_lock
        with output_lock({str(out)!r}):
            print("locked", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    with staged_output_folder(out) as staging:
        (staging / "a.txt").write_text("a")
    assert (out / "a.txt").is_file()


def test_staging_of_a_killed_run_is_cleaned_by_the_next(tmp_path):
    out = tmp_path / "R"
    (tmp_path / ".R.partial-abc123").mkdir()
    (tmp_path / ".R.partial-abc123" / "half.nrrd").write_text("half")
    with staged_output_folder(out) as staging:
        (staging / "a.txt").write_text("a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["R"]


def test_results_moved_aside_by_a_killed_run_come_back(tmp_path):
    out = tmp_path / "R"
    old = tmp_path / ".R.old-4242"  # killed between moving the old results aside and moving the new in
    old.mkdir()
    (old / MARKER).write_text("")
    (old / "report.json").write_text("{}")
    (tmp_path / ".R.partial-xyz").mkdir()
    with pytest.raises(Exception, match="already holds results"):
        with staged_output_folder(out):
            pass
    assert (out / "report.json").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["R"]
