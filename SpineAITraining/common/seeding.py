"""One seed for Python's, numpy's and torch's generators."""

import random

import numpy as np


def seed_everything(seed):
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
