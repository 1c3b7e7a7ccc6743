"""Training on several processes (GPUs or machines) through PyTorch's own launcher.

    torchrun --nproc_per_node 4 -m SpineAITraining.cli lp-ultrasound --data DIR --out BUNDLE ...
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --master_port 29500 --nproc_per_node 8 -m SpineAITraining.cli ...

torchrun sets RANK / LOCAL_RANK / WORLD_SIZE; without them everything here is a no-op and
a trainer runs as one plain process. With them: one process per GPU (``cuda:LOCAL_RANK``,
NCCL) or per CPU slot (gloo), the model wrapped in DistributedDataParallel, every process
training on its own shard of each epoch (DistributedSampler) and only rank 0 validating,
logging, checkpointing and writing the bundle; its decisions (best epoch, early stop)
are broadcast so every process leaves the epoch loop together.
"""

import os
from dataclasses import dataclass


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = None

    @property
    def enabled(self):
        return self.world_size > 1

    @property
    def is_main(self):
        return self.rank == 0

    def device(self, requested="auto"):
        """The device of this process: cuda:LOCAL_RANK when distributed on GPUs."""
        import torch

        from SpineAILib.models.device import choose_device

        if self.enabled and self.backend == "nccl":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return choose_device("cpu" if self.enabled and self.backend == "gloo" and requested == "auto" else requested)

    def wrap(self, model, device):
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def shard(self, n, seed, epoch):
        """This process's share of a shuffled 0..n-1 for ``epoch`` (DistributedSampler: same
        permutation on every rank, disjoint shares of equal length)."""
        import torch
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(range(n), num_replicas=self.world_size, rank=self.rank, shuffle=True,
                                     seed=seed, drop_last=self.enabled)  # fmt: skip
        sampler.set_epoch(epoch)
        return torch.tensor(list(iter(sampler)), dtype=torch.int64).numpy()

    def broadcast(self, value):
        """Rank 0's ``value`` on every rank (any picklable object)."""
        if not self.enabled:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self):
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def replicas_in_sync(self, model):
        """True when every process holds the same weights (DDP kept them so): checked, not assumed."""
        if not self.enabled:
            return True
        import torch
        import torch.distributed as dist

        total = sum(p.detach().double().sum() for p in model.parameters()).reshape(1).to(_collective_device(self))
        gathered = [torch.zeros_like(total) for _ in range(self.world_size)]
        dist.all_gather(gathered, total)
        values = [float(g.cpu()) for g in gathered]
        return max(values) - min(values) <= 1e-6 * max(1.0, abs(values[0]))

    def close(self):
        if self.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _collective_device(d):
    import torch

    return torch.device("cuda", d.local_rank) if d.backend == "nccl" else torch.device("cpu")


def setup(device="auto"):
    """A Distributed for this process; joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch
    import torch.distributed as dist

    use_gpu = device != "cpu" and torch.cuda.is_available()
    backend = "nccl" if use_gpu else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Distributed(rank=dist.get_rank(), world_size=dist.get_world_size(),
                       local_rank=int(os.environ.get("LOCAL_RANK", "0")), backend=backend)  # fmt: skip


def run_main(args, argv, body):
    """``body(args, argv, dist)`` inside the process group (torchrun) or alone; the group is always left."""
    dist = setup(args.device)
    try:
        return body(args, argv, dist)
    finally:
        dist.close()


def end_launched_process(code):
    """``code`` for a plain run; a process launched by torchrun ends here with ``code``, skipping
    the interpreter's finalisation. Why: gloo's worker threads free a finished collective's
    tensors after the caller has moved on, and a tensor made in Python needs the GIL to go; if
    that lands while the interpreter is tearing down, the thread aborts the process (SIGABRT,
    "terminate called without an active exception"), a run that trained and wrote its bundle
    fails. Seen in CI about once in ten runs; destroy_process_group does not join those threads."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return code
    import logging
    import sys

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def unwrap(model):
    return getattr(model, "module", model)
