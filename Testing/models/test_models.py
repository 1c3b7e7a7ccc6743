"""Model bundles, network factory, device choice, catalogue and the spineai-train CLI.

Networks here are tiny (a 2-D UNet with 4/8 channels) so the whole file runs in a
few seconds after the one-off torch/monai import.
"""

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")
pytest.importorskip("safetensors")

from safetensors.torch import save_file  # noqa: E402

from SpineAILib.errors import BundleError, InputError, OutputError, SpineAIError  # noqa: E402
from SpineAILib.models import (  # noqa: E402
    build_network,
    choose_device,
    convert_checkpoint,
    load_bundle,
    read_metadata,
    resolve_bundle,
    save_bundle,
)
from SpineAILib.models.bundle import file_sha256  # noqa: E402
from SpineAILib.models.catalogue import default_bundle_path, list_models, validate_catalogue  # noqa: E402

UNET = {"name": "UNet", "args": {"spatial_dims": 2, "in_channels": 1, "out_channels": 3, "channels": [4, 8], "strides": [2]}}


def metadata(network=UNET, task="lp-ultrasound", labels=("bad_quality", "spinal_cord", "csf")):
    return {
        "bundle_id": "test-unet",
        "version": "0.0.1",
        "task": task,
        "network": network,
        "input": {"channels": 1, "size": [32, 32], "intensity": {"kind": "scale", "min": 0, "max": 255}},
        "labels": list(labels),
        "thresholds": {"spinal_cord": 0.3, "csf": 0.7},
        "training": {"data": "synthetic", "command": "pytest", "seed": 0, "split": "none"},
        "metrics": [{"name": "accuracy", "value": 0.5, "data": "synthetic test split"}],
    }


def tiny_unet():
    torch.manual_seed(0)
    return build_network(UNET["name"], **UNET["args"]).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved UNet bundle and the model it came from (copy it before damaging it)."""
    model = tiny_unet()
    folder = save_bundle(tmp_path_factory.mktemp("bundles") / "unet", metadata(), model)
    return folder, model


@pytest.fixture
def bundle(saved, tmp_path):
    return Path(shutil.copytree(saved[0], tmp_path / "bundle"))


def rewrite_weights(folder, tensors):
    """Replace the weights and re-sign them, so only the key/shape check can object."""
    save_file(tensors, str(folder / "model.safetensors"))
    meta = json.loads((folder / "metadata.json").read_text())
    meta["sha256"] = file_sha256(folder / "model.safetensors")
    (folder / "metadata.json").write_text(json.dumps(meta))


def edit_metadata(folder, change):
    meta = json.loads((folder / "metadata.json").read_text())
    change(meta)
    (folder / "metadata.json").write_text(json.dumps(meta))


def error_of(call, *args, kind=BundleError, **kwargs):
    with pytest.raises(kind) as info:
        call(*args, **kwargs)
    text = str(info.value)
    assert "\n" not in text
    return text


# --- round trips -------------------------------------------------------------------


def test_unet_round_trip_gives_identical_outputs(saved):
    folder, model = saved
    loaded = load_bundle(folder, device="cpu", expected_task="lp-ultrasound")
    assert not loaded.model.training and loaded.device.type == "cpu"
    assert loaded.labels == ["bad_quality", "spinal_cord", "csf"] and loaded.thresholds["csf"] == 0.7
    meta = read_metadata(folder)
    assert meta["format_version"] == 1 and meta["created"] and meta["sha256"] == file_sha256(folder / "model.safetensors")
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(x), loaded.model(x))
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.json", "model.safetensors"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_resnet18_round_trip(tmp_path):
    network = {"name": "resnet18", "args": {"spatial_dims": 2, "n_input_channels": 1, "num_classes": 3}}
    model = build_network(network["name"], **network["args"]).eval()
    assert model.conv1.stride == (2, 2) and model.conv1.kernel_size == (7, 7)  # ImageNet-style stem by default
    folder = save_bundle(tmp_path / "resnet", metadata(network), model)
    loaded = load_bundle(folder, device="auto")
    x = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(model(x), loaded.model(x))


def test_network_factory_allow_list_and_arguments():
    text = error_of(build_network, "os.system", command="true")
    assert "unknown network 'os.system'" in text and "UNet" in text and "tv_resnet18" in text
    assert "cannot be built" in error_of(build_network, "UNet", spatial_dims=2)
    assert "pretrained" in error_of(build_network, "DenseNet121", spatial_dims=2, in_channels=1, out_channels=2, pretrained=True)
    net = build_network("tv_resnet18", in_channels=1, num_classes=3)
    assert tuple(net.conv1.weight.shape) == (64, 1, 7, 7) and net.fc.out_features == 3


def test_save_refuses_weights_that_do_not_fit_and_existing_folders(tmp_path, saved):
    other = build_network("UNet", **dict(UNET["args"], channels=[8, 16]))
    assert "first shape mismatch" in error_of(save_bundle, tmp_path / "b", metadata(), other)
    assert "already exists" in error_of(save_bundle, saved[0], metadata(), saved[1], kind=OutputError)
    assert not (tmp_path / "b").exists()
    copy = Path(shutil.copytree(saved[0], tmp_path / "copy"))
    save_bundle(copy, dict(metadata(), version="0.0.2"), saved[1], overwrite=True)
    assert read_metadata(copy)["version"] == "0.0.2"


# --- rejections --------------------------------------------------------------------


def test_missing_folder_metadata_and_weights(tmp_path, bundle):
    assert "does not exist" in error_of(load_bundle, tmp_path / "nowhere")
    (bundle / "model.safetensors").unlink()
    assert "no model.safetensors" in error_of(load_bundle, bundle)
    (bundle / "metadata.json").unlink()
    assert "no metadata.json" in error_of(load_bundle, bundle)


def test_truncated_weights(bundle):
    weights = bundle / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert "truncated or corrupt (safetensors:" in error_of(load_bundle, bundle)


def test_flipped_bytes_fail_the_sha256(bundle):
    weights = bundle / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8:] = bytes(b ^ 0xFF for b in data[-8:])
    weights.write_bytes(bytes(data))
    assert "does not match the sha256 in metadata.json" in error_of(load_bundle, bundle)


def test_wrong_task(bundle):
    text = error_of(load_bundle, bundle, expected_task="cervical-ct")
    assert "is for task 'lp-ultrasound', not 'cervical-ct'" in text


def test_missing_and_unexpected_keys(bundle, saved):
    state = {k: v.clone() for k, v in saved[1].state_dict().items()}
    first = next(iter(state))
    rewrite_weights(bundle, {k: v for k, v in state.items() if k != first})
    text = error_of(load_bundle, bundle)
    assert "1 missing key(s)" in text and first in text
    rewrite_weights(bundle, dict(state, **{"extra.weight": torch.zeros(2)}))
    assert "1 unexpected key(s) (extra.weight)" in error_of(load_bundle, bundle)


def test_wrong_shape(bundle, saved):
    state = {k: v.clone() for k, v in saved[1].state_dict().items()}
    key = next(k for k, v in state.items() if v.ndim == 4)
    state[key] = torch.zeros(*state[key].shape[:-1], state[key].shape[-1] + 1)
    rewrite_weights(bundle, state)
    assert f"first shape mismatch: {key} is" in error_of(load_bundle, bundle)


def test_bad_json(bundle):
    (bundle / "metadata.json").write_text('{"format_version": 1,')
    assert "is not valid JSON (line 1" in error_of(load_bundle, bundle)


@pytest.mark.parametrize(
    "field, change",
    [
        ("labels", lambda m: m.pop("labels")),
        ("network", lambda m: m.pop("network")),
        ("network.args", lambda m: m["network"].pop("args")),
        ("input.channels", lambda m: m["input"].pop("channels")),
        ("input.size", lambda m: m["input"].pop("size")),
        ("training.seed", lambda m: m["training"].pop("seed")),
        ("metrics[0].data", lambda m: m["metrics"][0].pop("data")),
        ("task", lambda m: m.update(task="knee-mri")),
        ("sha256", lambda m: m.update(sha256="abc")),
    ],
)
def test_schema_errors_name_the_field(bundle, field, change):
    edit_metadata(bundle, change)
    assert f"field '{field}'" in error_of(load_bundle, bundle)


def test_future_format_version(bundle):
    edit_metadata(bundle, lambda m: m.update(format_version=2))
    assert "format_version 2 is newer than this SpineAI reads (1)" in error_of(load_bundle, bundle)


def test_unknown_network_name_in_metadata(bundle):
    edit_metadata(bundle, lambda m: m["network"].update(name="subprocess.Popen"))
    assert "unknown network 'subprocess.Popen'" in error_of(load_bundle, bundle)


# --- pickles are never loaded ------------------------------------------------------


class Payload:
    """Unpickling this creates the marker file: proof that code ran."""

    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def no_unpickling(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)


def test_pt_files_are_refused(tmp_path, bundle, saved, no_unpickling):
    pt = tmp_path / "model.pt"
    pt.write_bytes(b"\x80\x04not really")
    assert "pickles are never loaded" in error_of(load_bundle, pt)
    assert "spineai-train convert" in error_of(load_bundle, pt)
    (bundle / "model.safetensors").unlink()
    (bundle / "model.pth").write_bytes(b"\x80\x04")
    text = error_of(load_bundle, bundle)
    assert "only model.pth" in text and "pickles are never loaded" in text


@pytest.mark.parametrize("kind", ["pickle-protocol-4", "pickle-protocol-0", "torch-save-zip"])
def test_malicious_pickle_named_safetensors_is_refused_without_running(bundle, tmp_path, kind, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setattr(Payload, "marker", marker)
    weights = bundle / "model.safetensors"
    if kind == "torch-save-zip":
        torch.save({"x": Payload()}, weights)
    else:
        weights.write_bytes(pickle.dumps(Payload(), protocol=4 if kind.endswith("4") else 0))
    edit_metadata(bundle, lambda m: m.update(sha256=file_sha256(weights)))

    def forbidden(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
        monkeypatch.setattr(module, name, forbidden)
    text = error_of(load_bundle, bundle)
    assert ("pickles are never loaded" in text) if kind != "pickle-protocol-0" else ("truncated or corrupt" in text)
    assert not marker.exists()


# --- converting a user's own checkpoint --------------------------------------------


def test_convert_checkpoint_uses_weights_only(tmp_path, saved, monkeypatch):
    pt = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in saved[1].state_dict().items()}}, pt)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    folder = convert_checkpoint(pt, tmp_path / "converted", metadata())
    assert calls and all(c.get("weights_only") is True for c in calls)
    monkeypatch.setattr(torch, "load", real_load)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_bundle(folder).model(x), saved[1](x))


def test_convert_checkpoint_refuses_objects(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setattr(Payload, "marker", marker)
    pt = tmp_path / "evil.pt"
    torch.save({"state_dict": Payload()}, pt)
    text = error_of(convert_checkpoint, pt, tmp_path / "out", metadata())
    assert "never unpickled" in text and not marker.exists() and not (tmp_path / "out").exists()
    assert "does not exist" in error_of(convert_checkpoint, tmp_path / "none.pt", tmp_path / "out", metadata())


# --- catalogue ---------------------------------------------------------------------


def test_catalogue_with_no_bundle_says_how_to_get_one(tmp_path):
    from SpineAILib.models.catalogue import CATALOGUE_PATH

    data = json.loads(CATALOGUE_PATH.read_text())  # the shipped catalogue without its cervical-ct bundles
    data["tasks"]["cervical-ct"]["default_bundle"] = None
    data["models"] = [m for m in data["models"] if not m["task"].startswith("cervical-ct")]
    catalogue = tmp_path / "Models.json"
    catalogue.write_text(json.dumps(data))
    text = error_of(resolve_bundle, "cervical-ct", catalogue=catalogue)
    assert text == (
        f"no model bundle installed for cervical-ct (the catalogue {catalogue} lists none; "
        "train one with `spineai-train cervical-ct ...` or pass --model BUNDLE)"
    )
    assert default_bundle_path("cervical-ct", catalogue) is None
    assert "unknown task" in error_of(resolve_bundle, "knee-mri", kind=InputError)


def test_catalogue_resolves_models_and_explicit_bundles(tmp_path, saved, monkeypatch):
    from SpineAILib.models import catalogue

    monkeypatch.setattr(catalogue, "RESOURCES_DIR", Path(saved[0]).parent)  # where shipped bundles would be
    data = json.loads(catalogue.CATALOGUE_PATH.read_text())
    entry = {"bundle_id": "unet", "task": "lp-ultrasound", "version": "0.0.1", "path": Path(saved[0]).name, "description": "d"}
    data["models"] = [entry, dict(entry, bundle_id="gone", path="gone")]
    for task in data["tasks"].values():  # the shipped entries are replaced: so are the defaults naming them
        task["default_bundle"] = None
    data["tasks"]["lp-ultrasound"]["default_bundle"] = "unet"
    path = tmp_path / "Models.json"
    path.write_text(json.dumps(data))
    assert [m["location"] for m in list_models("lp-ultrasound", catalogue=path)] == [str(saved[0]), None]
    assert resolve_bundle("lp-ultrasound", catalogue=path) == Path(saved[0])
    assert resolve_bundle("lp-ultrasound", model="unet", catalogue=path) == Path(saved[0])
    assert resolve_bundle("lp-ultrasound", model=str(saved[0]), catalogue=path) == Path(saved[0])
    assert "folder is missing" in error_of(resolve_bundle, "lp-ultrasound", model="gone", catalogue=path)
    assert "does not exist" in error_of(resolve_bundle, "lp-ultrasound", model=str(tmp_path / "nope"), catalogue=path)
    data["tasks"]["lp-ultrasound"]["default_bundle"] = "gone"
    path.write_text(json.dumps(data))
    assert "folder is missing" in error_of(resolve_bundle, "lp-ultrasound", catalogue=path)
    data["tasks"]["lp-ultrasound"]["default_bundle"] = "other"
    assert "tasks.lp-ultrasound.default_bundle" in error_of(validate_catalogue, data)


# --- device ------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_choose_device_without_a_gpu():
    assert choose_device("auto").type == "cpu" and choose_device("cpu").type == "cpu"
    text = error_of(choose_device, "cuda", kind=SpineAIError)
    assert text.startswith("CUDA was requested but no CUDA GPU is available (torch ")
    assert torch.__version__ in text
    assert "device must be" in error_of(choose_device, "tpu", kind=SpineAIError)


# --- training package --------------------------------------------------------------


def test_export_bundle_records_provenance(tmp_path):
    from SpineAITraining.common.export import export_bundle

    model = tiny_unet()
    meta = metadata()
    folder = export_bundle(
        model, tmp_path / "exported", bundle_id="exp", version="1.0", task="lp-ultrasound", network=UNET,
        input=meta["input"], labels=meta["labels"], data="synthetic", seed=7, split="80/20 by video",
        metrics=meta["metrics"], thresholds=meta["thresholds"],
    )
    written = read_metadata(folder)
    assert written["training"]["seed"] == 7 and written["training"]["split"] == "80/20 by video"
    assert written["training"]["versions"]["torch"] == torch.__version__ and "command" in written["training"]
    assert "git_commit" in written["training"]
    load_bundle(folder, expected_task="lp-ultrasound")


def test_spineai_train_cli(tmp_path, saved, capsys):
    from SpineAITraining.cli import main

    pt = tmp_path / "c.pt"
    torch.save(saved[1].state_dict(), pt)
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps(metadata()))
    assert main(["convert", str(pt), "--metadata", str(meta), "--out", str(tmp_path / "b")]) == 0
    assert read_metadata(tmp_path / "b")["bundle_id"] == "test-unet"
    assert main(["convert", str(pt), "--metadata", str(meta), "--out", str(tmp_path / "b")]) == 2
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:  # the task's own trainer parses its options
        main(["cervical-ct", "--epochs", "1"])
    assert stopped.value.code == 2 and "--out" in capsys.readouterr().err


def test_spineai_train_help_is_instant_and_imports_no_torch():
    code = "import sys, SpineAITraining.cli as c\ntry: c.main(['--help'])\nexcept SystemExit: pass\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert "convert" in out.stdout and out.stdout.strip().endswith("False")
