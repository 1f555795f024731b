"""Content fingerprints, so that a cached result is reused only for the same bytes.

- A checkpoint: the sha256 of the whole file.
- The images of a split: every file's name, label, size and modification time (ns), plus the sha256 of the
  whole content of SAMPLED_FILES files spread evenly over the split. Hashing all of ImageNet (140 GB) on every
  evaluation would take longer than the evaluation; a rewritten image changes its mtime (unless a copy
  preserves it on purpose), and the sampled content catches a whole set swapped with preserved times.
- A datasets root, for the pipeline's stages: the folders three levels down (imagenet/train/<class>, VOC2007/...)
  with their modification times and entry counts, and the files above that level (annotations, VOC and COCO
  images, MANIFEST.json) with their sizes and times: an image added, removed or renamed, an annotation file or a
  regenerated demo set changes it (ImageNet's images, four levels down, by their class folder).
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


def tree_fingerprint(root, depth=3):
    """sha256 over the folders and files of `root` down to `depth` levels: names, sizes, mtimes, entry counts."""
    digest, root = hashlib.sha256(), os.fspath(root)

    def walk(folder, level):
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        digest.update(f"{os.path.relpath(folder, root)}\t{len(entries)}\n".encode())
        for entry in entries:
            if level < depth and entry.is_dir(follow_symlinks=True):
                stat = entry.stat()
                digest.update(f"{entry.name}/\t{stat.st_mtime_ns}\n".encode())
                walk(entry.path, level + 1)
            elif level < depth and entry.is_file(follow_symlinks=True):
                stat = entry.stat()
                digest.update(f"{entry.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())

    walk(root, 0)
    return digest.hexdigest()
