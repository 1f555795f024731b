"""Schedules as functions of the step (or epoch): the value a ParamScheduler hook sets."""
import math


def cosine_schedule(base, final, total_steps, warmup_steps=0, warmup_start=0.0):
    """DINO's utils.cosine_scheduler as a function of the step: `warmup_steps` values from warmup_start to base
    (np.linspace, both ends included), then base + (final - base) along half a cosine over the remaining steps,
    reaching final only after the last one (DINO: lr and weight decay 0.04 -> 0.4, teacher momentum)."""
    def value(step):
        if step < warmup_steps:
            return warmup_start + (base - warmup_start) * (step / (warmup_steps - 1) if warmup_steps > 1 else 0.0)
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return final + 0.5 * (base - final) * (1 + math.cos(math.pi * progress))

    return value
