"""Atomic writes: a reader sees the old file or the new one, never half of one."""
import json
import os
from pathlib import Path


def write_bytes_atomic(path, data):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def write_json_atomic(path, data):
    write_bytes_atomic(path, (json.dumps(data, indent=2) + "\n").encode())
