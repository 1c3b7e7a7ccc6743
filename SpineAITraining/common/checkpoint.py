"""Checkpoints after every epoch, and ``--resume``.

Two formats: a ``torch.save`` dict of tensors and JSON strings, read back with
``weights_only=True`` (the lumbar and cervical trainers), and safetensors + JSON for the
ultrasound classifier (``save_tensors`` / ``load_tensors``). Both are written atomically: a
killed run leaves the previous checkpoint.
"""

import json
import os
import sys


def write_atomic(path, state):
    """``torch.save(state)`` to ``path`` through a temporary file."""
    import torch

    temp = path.with_suffix(".tmp")
    torch.save(state, temp)
    temp.replace(path)


def load_state(path, model, optimiser):
    """The ``write_atomic`` dict at ``path``, its "model" and "optimiser" loaded into ``model`` and ``optimiser``."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimiser.load_state_dict(state["optimiser"])
    return state


def save_checkpoint(path, model, optimiser, epoch, step, epochs, history, best, best_state):
    """Everything ``resume`` needs, written atomically (a killed run leaves the previous checkpoint)."""
    write_atomic(path, {"model": model.state_dict(), "optimiser": optimiser.state_dict(), "epoch": epoch, "step": step,
                        "epochs": epochs, "history": json.dumps(history), "best": json.dumps(best), "best_model": best_state})  # fmt: skip


def resume(path, model, optimiser, args, verbose=True):
    """Load a ``save_checkpoint`` file into model and optimiser: (epoch, step, epochs, history, best, best_state).
    A larger ``--epochs`` extends the run unless a time budget planned it."""
    state = load_state(path, model, optimiser)
    epoch, step, epochs = int(state["epoch"]), int(state["step"]), int(state["epochs"])
    epochs = max(epochs, args.epochs) if args.time_budget is None else epochs
    if verbose:
        print(f"resumed after epoch {epoch} from {path}", file=sys.stderr)
    return epoch, step, epochs, json.loads(state["history"]), json.loads(state["best"]), state["best_model"]


def start_or_resume(spec, args, work, device, log):
    """A seeded network from ``spec`` with its AdamW optimiser, resumed from ``work/last.pt`` with ``--resume``.

    Returns (model, optimiser, checkpoint path, (epochs, epoch, step, history, best, best_state, trained seconds)) for
    the trainers whose checkpoints record the seconds trained (``cervical.cases.end_epoch``). A larger ``--epochs``
    extends a resumed run unless a time budget planned it.
    """
    import torch

    from SpineAILib.models.networks import build_network
    from SpineAITraining.common.seeding import seed_everything

    work.mkdir(parents=True, exist_ok=True)
    seed_everything(args.seed)
    model = build_network(spec["name"], **spec["args"]).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    progress = (args.epochs, 0, 0, [], None, None, 0.0)
    checkpoint = work / "last.pt"
    if args.resume and checkpoint.is_file():
        state = load_state(checkpoint, model, optimiser)
        epochs = max(int(state["epochs"]), args.epochs) if args.time_budget is None else int(state["epochs"])
        progress = (epochs, int(state["epoch"]), int(state["step"]), json.loads(state["history"]),
                    json.loads(state["best"]), state["best_model"], float(state["seconds"]))  # fmt: skip
        log(f"resumed after epoch {progress[1]} from {checkpoint}")
    return model, optimiser, checkpoint, progress


def save_tensors(work, model, optimizer, state):
    """model + optimizer tensors to safetensors, the rest to JSON (never pickles)."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for index, entry in opt["state"].items():
        for key, value in entry.items():
            tensors[f"optim.{index}.{key}"] = value.detach().cpu().contiguous().clone().reshape(-1) if value.ndim == 0 else value.detach().cpu().contiguous().clone()
    state = dict(state, param_groups=opt["param_groups"], optim_scalar_keys=[
        f"optim.{i}.{k}" for i, e in opt["state"].items() for k, v in e.items() if v.ndim == 0
    ])
    work.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(work / ".last.safetensors.tmp"))
    os.replace(work / ".last.safetensors.tmp", work / "last.safetensors")
    (work / ".state.json.tmp").write_text(json.dumps(state, indent=1))
    os.replace(work / ".state.json.tmp", work / "state.json")


def load_tensors(work, model, optimizer):
    """A ``save_tensors`` checkpoint into model and optimizer; returns its JSON state."""
    from safetensors.torch import load_file

    state = json.loads((work / "state.json").read_text())
    tensors = load_file(str(work / "last.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    scalars = set(state.get("optim_scalar_keys", []))
    opt_state = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            opt_state.setdefault(int(index), {})[name] = value.reshape(()) if key in scalars else value
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    return state
