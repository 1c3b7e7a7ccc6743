"""Training logs for TensorBoard (``tensorboard --logdir BUNDLE.work/tensorboard``).

One writer per run, on rank 0 only (the other processes of a distributed run get a writer
that does nothing). Scalars per epoch (losses, validation metrics, learning rate) and the
final metric table as text; a resumed run appends to the same folder, so its curves go on.
"""

from pathlib import Path


class _Silent:
    def scalars(self, step, values, prefix=""):
        pass

    def text(self, tag, text, step=0):
        pass

    def close(self):
        pass


class Tracker(_Silent):
    def __init__(self, folder):
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(self.folder))

    def scalars(self, step, values, prefix=""):
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:  # NaN skipped
                self.writer.add_scalar(f"{prefix}{name}", float(value), int(step))
        self.writer.flush()

    def text(self, tag, text, step=0):
        self.writer.add_text(tag, text, int(step))
        self.writer.flush()

    def close(self):
        self.writer.close()


def tracker(folder, enabled=True):
    """A TensorBoard writer into ``folder``; a silent one when ``enabled`` is false."""
    return Tracker(folder) if enabled else _Silent()
