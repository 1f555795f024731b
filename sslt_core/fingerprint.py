"""Content fingerprints, so that a cached result is reused only for the same bytes.

- A checkpoint: the sha256 of the whole file.
- The images of a split: every file's name, label, size and modification time (ns), plus the sha256 of the
  whole content of SAMPLED_FILES files spread evenly over the split. Hashing all of ImageNet (140 GB) on every
  evaluation would take longer than the evaluation; a rewritten image changes its mtime (unless a copy
  preserves it on purpose), and the sampled content catches a whole set swapped with preserved times.
- The same for each split a pipeline stage reads (sslt_pipeline/pipeline.py): an ImageFolder split's images, or
  every file of a detection dataset (images, annotations, image lists), as sslt_core/listing.py lists them.
"""
import hashlib
import os

SAMPLED_FILES = 64


def file_digest(path, chunk=1 << 20):
    """sha256 of a file's content (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def samples_fingerprint(samples):
    """sha256 over [(path, label), ...]: names, labels, sizes, mtimes, and the content of a spread sample."""
    digest = hashlib.sha256()
    for path, label in samples:
        stat = os.stat(path)
        digest.update(f"{path}\t{label}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    step = max(1, len(samples) // SAMPLED_FILES)
    for path, _ in samples[::step][:SAMPLED_FILES]:
        digest.update(file_digest(path).encode())
    return digest.hexdigest()
