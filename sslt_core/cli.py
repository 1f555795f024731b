"""What every tool shares: an argument parser whose errors are one line, checked argument types, and the runner
that turns the toolkit's errors into `error: <one line>` and a non-zero exit.

    def main(argv=None):
        parser = ToolParser(description=__doc__)
        parser.add_argument("--k", type=positive_int, nargs="+", default=[20])
        args = parser.parse_args(argv)
        ...

    if __name__ == "__main__":
        run(main)
"""
import argparse
import math
import os
import sys
from pathlib import Path

from sslt_core.atomic import check_name_length, check_replaceable
from sslt_core.errors import OutputError, ToolkitError


class ToolParser(argparse.ArgumentParser):
    """argparse with the tool's docstring as help and one-line errors (exit status 2)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        kwargs.setdefault("allow_abbrev", False)  # --output is not --output-dir: a flag is given whole
        super().__init__(**kwargs)

    def error(self, message):
        self.exit(2, f"error: {message}; see {self.prog} --help\n")


def _number(text, kind, check, meaning):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {meaning}, got {text!r}") from None
    if kind is float and not math.isfinite(value) or not check(value):
        raise argparse.ArgumentTypeError(f"must be {meaning}, got {text!r}")
    return value


def positive_int(text):
    return _number(text, int, lambda v: v > 0, "a positive integer")


def non_negative_int(text):
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text):
    return _number(text, float, lambda v: v > 0, "a positive number")


def crop_size(text):
    """An evaluation crop in pixels: 32 (CIFAR) to 1024."""
    return _number(text, int, lambda v: 32 <= v <= 1024, "an integer from 32 to 1024")


def add_cluster_arguments(parser):
    """--launcher and the resources of a SLURM (or submitit-local) job, for the tools that can submit one."""
    group = parser.add_argument_group("cluster (--launcher slurm | submitit-local)")
    group.add_argument("--launcher", choices=("local", "submitit-local", "slurm"), default="local",
                       help="local: this process (or torchrun's); slurm: submit a job through submitit")
    group.add_argument("--nodes", type=positive_int, default=1)
    group.add_argument("--gpus-per-node", type=non_negative_int, default=8, help="one process per GPU")
    group.add_argument("--cpus-per-task", type=positive_int, default=10, help="data loading processes + 2")
    group.add_argument("--partition", help="SLURM partition")
    group.add_argument("--account", help="SLURM account")
    group.add_argument("--time", type=positive_int, default=72 * 60, help="minutes per job (it requeues itself)")
    group.add_argument("--slurm-dir", help="where sbatch scripts and job logs go (default: OUTPUT/slurm)")
    group.add_argument("--wait", action="store_true", help="wait for the job and report how it ended")


def one_line(error):
    """The error's message on one line. A DataLoader worker's error arrives as 'Caught X in DataLoader worker ...
    Original Traceback ... module.X: message': its last line, without the 'module.X: ' part, is the message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if len(lines) > 1 and "Traceback" in str(error):
        last = lines[-1]
        name = type(error).__name__
        return _bounded(last.split(f"{name}: ", 1)[1] if f"{name}: " in last else last)
    return _bounded(" ".join(lines))


MESSAGE_LIMIT = 600  # characters: a message that echoes a 40 KB value stays readable


def _bounded(message):
    return message if len(message) <= MESSAGE_LIMIT else f"{message[:MESSAGE_LIMIT]}... (cut)"


def _check_can_create(path, folder):
    """The nearest existing folder of `folder` (itself or a parent) must be one this process can write into."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write {path}: {existing} is a file, not a folder; choose another output path")
    probe = existing / f".probe-{os.getpid()}-{id(path):x}"  # short: `path`'s own name may be near NAME_MAX
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise OutputError(f"cannot write {path} ({error.strerror} in {existing}); choose a folder you can write "
                          "to") from None


def writable_folder(path):
    """Check up front that `path` is, or can become, a folder this process writes into; return it as a Path.
    Nothing is created here."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} exists and is not a folder; give a folder (or a path that does not exist yet)")
    _check_can_create(path, path)
    return path


def writable_file(path):
    """Check up front that `path` can be written, so that a long computation is not thrown away at the end; return
    it as a Path. Missing folders are not created here (an input error found later must leave nothing behind):
    the nearest existing one must be a folder this process can write into."""
    path = Path(path)
    check_name_length(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name for the output")
    check_replaceable(path)
    _check_can_create(path, path.parent)
    return path


def _close_progress_bars():
    """Clear the progress bars an error left open, so that its line does not start on a bar's remains."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def run(main, argv=None):
    """Run a tool's main(argv); a ToolkitError, or an OSError of a file it reads or writes, ends as one line and
    exit status 1."""
    try:
        try:
            status = main(argv)
        except BaseException:
            _close_progress_bars()
            raise
    except ToolkitError as error:
        sys.exit(f"error: {one_line(error)}")
    except OSError as error:  # a file or folder the tool could not read or write
        where = f": {error.filename}" if error.filename else ""
        sys.exit(f"error: {error.strerror or one_line(error)}{where}; check the path and its permissions")
    except RecursionError:  # a YAML or JSON file nested thousands deep, wherever a reader met it
        sys.exit("error: an input file (a config, a results, record or cache file) nests thousands of levels deep, "
                 "which no file of this toolkit does; give the file the toolkit wrote, or a config of the documented "
                 "shape")
    except KeyboardInterrupt:
        sys.exit("error: interrupted; run the same command again (with --resume where the tool has it) to continue")
    sys.exit(status or 0)
