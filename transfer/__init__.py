"""Detection transfer through detectron2: conversion, fine-tuning, evaluation."""
import warnings

# detectron2 calls torch.jit.script at import time, which torch >= 2.10 reports as deprecated on every import: not
# ours to fix, and four lines of noise before every message of the tools.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
