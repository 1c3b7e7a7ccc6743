"""Issue 17, rows 1, 4, 5, 9: a hostile scene bundle (.mrb) writes nothing outside a private
temporary folder, pulls in no file from elsewhere, and is refused with one line."""

import os
import subprocess
import sys
import tempfile
import zipfile

import pytest
from hostile_files import assert_refused, claim_size, cli, rewrite_zip, scene_bundle, symlink_member

from SpineAILib.errors import InputError


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return scene_bundle(tmp_path_factory.mktemp("scene") / "scene.mrb")


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Temporary folders of this test land here, so that 'always removed' can be checked."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def export(capsys, bundle, tmp_path):
    return cli(capsys, "dataset", "export", bundle, "--task", "lumbar-mri", "--out", tmp_path / "D",
               "--key-file", tmp_path / "key")  # fmt: skip


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink"])
def test_zip_slip_members_are_refused_before_anything_is_written(scene, tmp_path, private_tmp, capsys, kind):
    victim = tmp_path / "x" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("precious")
    name = {"absolute": str(victim), "dotdot": "../" * 12 + str(victim).lstrip("/")}.get(kind)
    member = symlink_member("scene/Data/link.nrrd", str(victim)) if kind == "symlink" else (name, "OVERWRITTEN")
    evil = rewrite_zip(scene, tmp_path / "evil.mrb", extra=[member])
    line = assert_refused(*export(capsys, evil, tmp_path), "evil.mrb", "refused")
    assert victim.read_text() == "precious", line
    assert not (tmp_path / "D").exists() and list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../etc/passwd", "../outside.nrrd"])
def test_scene_naming_a_file_outside_its_bundle_is_refused(scene, tmp_path, private_tmp, capsys, target):
    def point_elsewhere(name, data):
        return data.replace(b'fileName="Data/mri.nrrd"', f'fileName="{target}"'.encode()) if name.endswith(".mrml") else data

    evil = rewrite_zip(scene, tmp_path / "evil.mrb", edit=point_elsewhere)
    assert_refused(*export(capsys, evil, tmp_path), "outside the bundle")
    assert not (tmp_path / "D").exists() and list(private_tmp.iterdir()) == []


def test_scene_naming_a_uri_is_refused(scene, tmp_path, capsys):
    def add_uri(name, data):
        return data.replace(b'fileName="Data/mri.nrrd"', b'fileName="Data/mri.nrrd" uri="http://example.org/x.nrrd"') \
            if name.endswith(".mrml") else data  # fmt: skip

    assert_refused(*export(capsys, rewrite_zip(scene, tmp_path / "evil.mrb", edit=add_uri), tmp_path), "URI")


def test_detached_header_inside_a_bundle_cannot_name_a_file_outside(scene, tmp_path, capsys):
    header = b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\nencoding: raw\ndata file: /etc/passwd\n\n"
    evil = rewrite_zip(scene, tmp_path / "evil.mrb", extra=[("scene/Data/extra.nhdr", header)])
    assert_refused(*export(capsys, evil, tmp_path), "/etc/passwd", "refused")


def test_zip_bomb_is_refused_from_its_header(scene, tmp_path, private_tmp, capsys):
    bomb = rewrite_zip(scene, tmp_path / "bomb.mrb")
    claim_size(bomb, "scene/Data/mri.nrrd", 4 * 1024**3 - 1)  # 4 GiB claimed by a few kB
    assert_refused(*export(capsys, bomb, tmp_path), "GiB", "limit")
    assert list(private_tmp.iterdir()) == []


def test_real_zip_bomb_over_a_limit_is_refused_and_cleaned(tmp_path, private_tmp):
    from SpineAILib.archive import ArchiveLimits, extracted

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("scene/zeros.raw", bytes(64 * 2**20))  # 64 MiB in about 64 kB
        z.writestr("scene/scene.mrml", "<MRML></MRML>")
    assert bomb.stat().st_size < 2**20
    with pytest.raises(InputError, match="limit"):
        with extracted(bomb, ArchiveLimits(max_total_bytes=16 * 2**20)):
            pass
    with pytest.raises(InputError, match="holds 2 files"):
        with extracted(bomb, ArchiveLimits(max_members=1)):
            pass
    assert list(private_tmp.iterdir()) == []


def test_the_scene_still_loads_and_its_folder_is_removed(scene, private_tmp):
    from SpineAILib.scene.context import SceneContext
    from SpineAILib.scene.storage import load_scene_mrb

    nodes = load_scene_mrb(SceneContext.headless(), scene)
    assert {"mri", "vertebrae"} <= {n.GetName() for n in nodes}
    assert list(private_tmp.iterdir()) == []


def test_a_refused_scene_prints_exactly_one_line(scene, tmp_path):
    """A subprocess pins what the user sees: exit 2 and one stderr line, no VTK/ITK noise."""

    def point_elsewhere(name, data):
        return data.replace(b'fileName="Data/mri.nrrd"', b'fileName="/etc/passwd"') if name.endswith(".mrml") else data

    evil = rewrite_zip(scene, tmp_path / "evil.mrb", edit=point_elsewhere)
    result = subprocess.run([sys.executable, "-m", "SpineAILib.cli", "dataset", "export", str(evil), "--task", "lumbar-mri",
                             "--out", str(tmp_path / "D"), "--key-file", str(tmp_path / "key")],
                            capture_output=True, text=True, timeout=120, env=dict(os.environ, SPINEAI_DEBUG="0"))  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("[")]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("spineai: error: "), result.stderr
