"""A scope for a run's seeds: library code that must seed the global generators (a training run draws its
initial weights, dropout and shuffles from them) restores them on the way out, so the caller's RNG state is
the same after the call as before it."""
import random
from contextlib import contextmanager

import numpy as np
import torch


@contextmanager
def rng_scope():
    """Save the torch (CPU and CUDA), numpy and Python generators' states; restore them when the block ends."""
    saved = (torch.random.get_rng_state(), np.random.get_state(), random.getstate(),
             torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    try:
        yield
    finally:
        torch.random.set_rng_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])
        if saved[3] is not None:
            torch.cuda.set_rng_state_all(saved[3])
