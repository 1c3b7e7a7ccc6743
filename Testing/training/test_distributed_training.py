"""Training under PyTorch's launcher: `torchrun --nproc_per_node 2` on CPU (gloo), the path a
multi-GPU or multi-machine run takes (nccl there). Each process trains on its shard, the
replicas must end with identical weights (DistributedDataParallel kept them in sync), and
only rank 0 writes the bundle and the TensorBoard logs. The shards are checked apart from the
trainers' own report: every rank writes the sample indices it draws, and together they must be
disjoint and cover the data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def torchrun(args, tmp_path):
    env = dict(os.environ, SPINEAI_DEID_KEY_FILE=str(tmp_path / "site.key"))
    result = subprocess.run([TORCHRUN, "--nproc_per_node", "2", "--standalone", "-m", "SpineAITraining.cli", *args],
                            capture_output=True, text=True, timeout=400, cwd=REPO, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def event_writers(folder):
    """The processes (pid in the file name) that wrote TensorBoard event files in ``folder``."""
    return {p.name.split(".")[4] for p in Path(folder).rglob("events.out.tfevents.*")}


@pytest.fixture(autouse=True)
def needs_torchrun():
    if not Path(TORCHRUN).is_file():
        pytest.skip(f"{TORCHRUN} is absent")


SHARD_PROBE = """
import json, sys
from pathlib import Path
from SpineAITraining.common.distributed import setup

dist = setup("cpu")
n, out = int(sys.argv[1]), Path(sys.argv[2])
try:
    shards = {epoch: dist.shard(n, 7, epoch).tolist() for epoch in (0, 1)}
    (out / f"rank{dist.rank}.json").write_text(json.dumps({"world": dist.world_size, "shards": shards}))
finally:
    dist.close()
"""


@pytest.mark.parametrize("n", [40, 37])
def test_shards_are_disjoint_and_cover_the_data(tmp_path, n):
    """Each rank's sample indices, as the process group draws them (not what the trainer says of itself)."""
    probe = tmp_path / "probe.py"
    probe.write_text(SHARD_PROBE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "SpineAI"), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([TORCHRUN, "--nproc_per_node", "2", "--standalone", str(probe), str(n), str(tmp_path)],
                            capture_output=True, text=True, timeout=200, cwd=REPO, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    for epoch in ("0", "1"):
        a, b = (set(r["shards"][epoch]) for r in ranks)
        assert len(a) == len(b) == n // 2 == len(ranks[0]["shards"][epoch])  # no index twice within a rank
        assert not a & b  # disjoint
        assert a | b <= set(range(n)) and len(a | b) == n - n % 2  # together all of it (drop_last: one left over when odd)
    assert ranks[0]["shards"]["0"] != ranks[0]["shards"]["1"]  # reshuffled every epoch


def test_lp_ultrasound_trains_on_two_processes(tmp_path):
    from SpineAILib.models.bundle import load_bundle
    from SpineAITraining.ultrasound.generator import write_seed_layout

    data = write_seed_layout(tmp_path / "data", 3, frames_per_video=8, size=(96, 96))
    out = tmp_path / "bundle"
    torchrun(["lp-ultrasound", "--data", str(data), "--out", str(out), "--network", "small", "--size", "48", "--epochs", "2",
              "--negatives", "1", "--batch-size", "4", "--threads", "1", "--pretrained", "no", "--quiet", "--windows", "0",
              "--device", "cpu"], tmp_path)  # fmt: skip
    meta = load_bundle(out, device="cpu", expected_task="lp-ultrasound").metadata
    assert meta["training"]["processes"] == 2 and meta["training"]["replicas_in_sync"] is True
    history = json.loads((out / "report" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2] and all(h["processes"] == 2 for h in history)
    assert len(event_writers(tmp_path / "bundle.work")) == 1  # rank 0 only


def test_lumbar_mri_trains_on_two_processes_from_an_export(tmp_path):
    from dataset_helpers import mri_run_folder

    from SpineAILib.dataset import export_dataset
    from SpineAILib.io.volumes import save_volume_file
    from SpineAILib.samples.spine_phantom import make_phantom

    runs = []
    for n in range(2):
        image, labels = make_phantom("MR", shape_kji=(16, 96, 64), spacing=(2.0, 2.0, 4.0), plane="sagittal", seed=n)
        path = save_volume_file(image, tmp_path / f"mri{n}.nii.gz")
        runs.append(mri_run_folder(tmp_path / f"run{n}", path, image, labels, severity=False))
    data = tmp_path / "dataset"
    export_dataset(runs, "lumbar-mri", data, split="train=0.5,validation=0.5", key_file=tmp_path / "site.key")
    out = tmp_path / "bundle"
    torchrun(["lumbar-mri", "--data", str(data), "--out", str(out), "--epochs", "2", "--samples-per-epoch", "8",
              "--batch-size", "2", "--channels", "4,8,16,32,64", "--device", "cpu", "--quiet"], tmp_path)  # fmt: skip
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["training"]["processes"] == 2 and meta["training"]["replicas_in_sync"] is True
    assert [h["processes"] for h in meta["training"]["history"]] == [2, 2]
    assert meta["training"]["split"]["file"].endswith("dataset.json")
    assert (out / "report" / "metrics.md").is_file() and (out / "report" / "training_curves.png").is_file()
    assert len(event_writers(tmp_path / "bundle.work")) == 1


ENDING_PROBE = """
import atexit, logging, sys
from pathlib import Path
from SpineAITraining.common.distributed import end_launched_process

logging.basicConfig(level=logging.INFO, format="%(message)s")
atexit.register(lambda: Path(sys.argv[1]).write_text("finalised"))
logging.info("bundle written")
print("last words", end="")
sys.exit(end_launched_process(int(sys.argv[2])))
"""


@pytest.mark.parametrize("world_size", ["1", "2"])
def test_a_launched_process_ends_with_its_code_and_skips_finalisation(tmp_path, world_size):
    """Under torchrun (WORLD_SIZE > 1) a trainer's process ends with its exit code, its output flushed, and
    without Python's shutdown (where gloo's threads aborted a finished run); a plain run ends as usual."""
    probe = tmp_path / "probe.py"
    probe.write_text(ENDING_PROBE)
    marker = tmp_path / "finalised.txt"
    env = dict(os.environ, WORLD_SIZE=world_size,
               PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "SpineAI"), os.environ.get("PYTHONPATH", "")]))  # fmt: skip
    result = subprocess.run([sys.executable, str(probe), str(marker), "3"], capture_output=True, text=True,
                            timeout=60, cwd=REPO, env=env)  # fmt: skip
    assert result.returncode == 3
    assert result.stdout == "last words" and "bundle written" in result.stderr
    assert marker.exists() == (world_size == "1")
