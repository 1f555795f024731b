"""The pretraining checkpoint (OUTPUT/checkpoint.pth): what it records, and its checks when a run resumes from it.

    {"ssl_transfer": metadata, "model", "optimizer", "step", "ranks": [{"rng", "method"} per process],
     "partial_epoch": (losses, output stds) of the epoch it stopped in}
written by the engine's Checkpointer (sslt_core/engine/checkpoint.py), read back weights-only.
"""
from pathlib import Path

from pretrain import distributed
from sslt_core.errors import CheckpointError
from sslt_core.rng import set_rng_state
from sslt_core.safe_load import TRUST_FLAG, load_file

# What a resumed run may change: where the data lives and how the run is watched, never the recipe.
RESUMABLE_CHANGES = ("data", "workers", "knn_every", "knn_k", "knn_temperature", "checkpoint_every", "max_steps",
                     "log_every", "diagnostics_every", "diagnostics_samples", "diagnostics_seed")


def metadata(run, step, epochs_done):
    """The "ssl_transfer" record of a checkpoint and of the exported encoder."""
    return {"method": run.method, "arch": run.model.arch, "epochs": run.train.epochs, "epochs_done": epochs_done,
            "steps": step, "config": run.to_dict()}


def has_checkpoint(output_dir):
    """Whether output_dir holds a checkpoint.pth, a broken link included (refused when read, never skipped)."""
    path = Path(output_dir) / "checkpoint.pth"
    return path.exists() or path.is_symlink()


def load_checkpoint(path, run, method, optimizer, world, total_steps):
    """Restore model, optimizer, this rank's state and RNG; return (step, partial-epoch monitors).
    The checkpoint is read weights-only: a file planted in the output folder cannot run code."""
    try:
        state = load_file(path)
    except CheckpointError as error:  # our own checkpoints hold nothing to trust: no --trust-checkpoint here
        raise CheckpointError(str(error).replace(f"if you trust this file, pass {TRUST_FLAG}", "this toolkit did "
                                                 "not write it; choose another --output-dir")) from None
    keys = ("ssl_transfer", "model", "optimizer", "step", "ranks", "partial_epoch")
    if not isinstance(state, dict) or any(k not in state for k in keys):
        raise CheckpointError(f"{path} is not a pretraining checkpoint of this toolkit (it lacks "
                              f"{[k for k in keys if k not in state] if isinstance(state, dict) else keys}); "
                              "choose another --output-dir")
    recorded = state["ssl_transfer"].get("config") if isinstance(state["ssl_transfer"], dict) else None
    if not isinstance(recorded, dict) or recorded.get("method") != run.method:
        found = recorded.get("method") if isinstance(recorded, dict) else "an unknown"
        raise CheckpointError(f"{path} is {found} checkpoint; this run is {run.method}: choose another --output-dir")
    current = run.to_dict()
    was = {part: recorded.get(part) if isinstance(recorded.get(part), dict) else {} for part in ("model", "train")}
    changed = [f"model.{k}" for k in current["model"] if was["model"].get(k) != current["model"][k]]
    changed += [f"train.{k}" for k in current["train"]
                if k not in RESUMABLE_CHANGES and was["train"].get(k) != current["train"][k]]
    if changed:
        raise CheckpointError(f"{path} was written with other {', '.join(changed)}; resume with the config that wrote "
                              "it (its config.yaml), or choose another --output-dir")
    step, partial = state["step"], state["partial_epoch"]
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= total_steps:
        raise CheckpointError(f"{path} records step {step!r}; a run of {total_steps} steps has steps 0 to "
                              f"{total_steps}: choose another --output-dir")
    if not (isinstance(partial, (list, tuple)) and len(partial) == 2 and all(
            isinstance(part, list) and all(isinstance(v, (int, float)) for v in part) for part in partial)):
        raise CheckpointError(f"{path}: its partial_epoch is not two lists of numbers; choose another --output-dir")
    ranks = state["ranks"]
    if not isinstance(ranks, (list, tuple)) or not all(
            isinstance(r, dict) and {"method", "rng"} <= set(r) and isinstance(r["rng"], dict) and
            {"torch", "numpy", "python", "cuda"} <= set(r["rng"]) for r in ranks):
        raise CheckpointError(f"{path}: its per-process state (ranks) lacks the method's or the RNG's state; this "
                              "toolkit did not write it: choose another --output-dir")
    if len(ranks) != world:
        raise CheckpointError(f"{path} was written by {len(ranks)} processes; this run has {world}: resume with the "
                              "same number of processes, or start a new --output-dir")
    try:
        method.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as error:
        detail = next((line.strip() for line in str(error).splitlines() if line.strip()), "")[:200]
        raise CheckpointError(f"{path} does not fit this run's model or optimizer ({detail}); resume with the "
                              "config that wrote it, or choose another --output-dir") from None
    mine = ranks[distributed.rank()]
    try:
        method.load_rank_state(mine["method"])
        set_rng_state(mine["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as error:
        raise CheckpointError(f"{path}: the state of process {distributed.rank()} is damaged ({type(error).__name__}: "
                              f"{str(error)[:100]}); choose another --output-dir") from None
    return state["step"], state["partial_epoch"]
