"""The run's output folder on rank 0: links refused before anything is written, the metric lines kept up to the
checkpoint's step on a resume, the log's lines, and what a failed run removes again."""
import json
import shutil

from tqdm import tqdm

from sslt_core.atomic import check_output_folder, check_replaceable, open_output, write_bytes_atomic
from sslt_core.errors import CheckpointError
from sslt_core.lock import LOCK_NAME

RECORDS = ("metrics.jsonl", "spectra.jsonl")


def say(output_dir, message):
    """A line for the console and OUTPUT/log.txt (rank 0)."""
    tqdm.write(message)
    with open_output(output_dir / "log.txt", "a") as file:
        file.write(message + "\n")


def _logged_by_step(line, step):
    try:
        return json.loads(line)["step"] <= step
    except (ValueError, KeyError, TypeError):  # a line cut short by a kill
        return False


def _metrics_lines(path):
    """The lines of a run's metrics.jsonl or spectra.jsonl; json.dumps writes ASCII, so a line that is not UTF-8
    was not ours."""
    check_replaceable(path)  # a link planted there is neither read nor written through
    lines = path.read_bytes().splitlines()
    for number, line in enumerate(lines, 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(f"{path} line {number} is not UTF-8 text, so this toolkit did not write it; "
                                  "choose another --output-dir") from None
    return [line.decode() for line in lines]


def check_outputs(output_dir, step):
    """Refuse links planted where the run writes; return {record path: its lines up to `step`} (what came after
    the checkpoint, or was cut by a kill, is dropped when keep() rewrites them)."""
    check_output_folder(output_dir / "tensorboard")
    for name in ("log.txt", "config.yaml", "encoder.safetensors"):  # written through, or replaced at the end
        check_replaceable(output_dir / name)
    kept = {}
    for path in (output_dir / name for name in RECORDS):
        if path.exists() or path.is_symlink():
            kept[path] = [line for line in _metrics_lines(path) if _logged_by_step(line, step)]
    return kept


def keep(kept):
    """Rewrite each record with the lines check_outputs kept."""
    for path, lines in kept.items():
        write_bytes_atomic(path, "".join(line + "\n" for line in lines).encode())


def remove_new(output_dir, before):
    """Remove what this run created in output_dir (config.yaml, log.txt, metrics.jsonl, tensorboard/), the lock
    file aside."""
    for path in output_dir.iterdir():
        if path.name not in before and path.name != LOCK_NAME:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
