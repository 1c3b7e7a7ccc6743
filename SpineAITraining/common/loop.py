"""Training-loop pieces: the learning-rate schedule and the segmentation loss."""

import math


def learning_rate(step, total, peak, warmup=200, floor=0.0):
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``floor * peak`` at ``total`` steps."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def ce_dice_loss(logits, target, ignore_index=None):
    """Cross entropy + soft Dice over the foreground classes (class 0 is background), for 2-D or 3-D
    ``logits`` (N, C, ...) and integer ``target`` (N, ...); pixels equal to ``ignore_index`` count in neither."""
    import torch
    import torch.nn.functional as F

    dims = (0, *range(2, logits.ndim))
    channels_first = (0, logits.ndim - 1, *range(1, logits.ndim - 1))
    if ignore_index is None:
        ce = F.cross_entropy(logits, target)
        probs = torch.softmax(logits, 1)
        onehot = F.one_hot(target, logits.shape[1]).permute(*channels_first).float()
    else:
        ce = F.cross_entropy(logits, target, ignore_index=ignore_index)
        valid = (target != ignore_index).unsqueeze(1).float()
        probs = torch.softmax(logits, 1) * valid
        onehot = F.one_hot(target.clamp(max=logits.shape[1] - 1) * (target != ignore_index), logits.shape[1])
        onehot = onehot.permute(*channels_first).float() * valid
    intersection = (probs * onehot).sum(dims)[1:]
    denominator = (probs.sum(dims) + onehot.sum(dims))[1:]
    return ce + (1 - ((2 * intersection + 1.0) / (denominator + 1.0)).mean())


def optimiser_step(optimiser, loss, lr):
    """One step at learning rate ``lr``: gradients of ``loss`` from zero, then the update; returns the loss."""
    for group in optimiser.param_groups:
        group["lr"] = lr
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return float(loss.detach())
