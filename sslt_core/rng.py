"""The global generators' state: saved and restored for an exact resume (rng_state, set_rng_state), and a scope
for a run's seeds: library code that must seed the global generators (a training run draws its initial weights,
dropout and shuffles from them) restores them on the way out, so the caller's RNG state is the same after the
call as before it."""
import random
from contextlib import contextmanager

import numpy as np
import torch


def rng_state():
    """The torch (CPU and CUDA), numpy and Python generators' states, as a checkpoint stores them."""
    return {"torch": torch.random.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state):
    """Restore what rng_state() returned (the CUDA part only where there is a GPU)."""
    torch.random.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def rng_scope():
    """Save the torch (CPU and CUDA), numpy and Python generators' states; restore them when the block ends."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)
