"""One error type per domain. Each message is one line that names the problem and the fix; the tools print it
as `error: <message>` and exit with status 1 (sslt_core/cli.py)."""


class ToolkitError(Exception):
    """What a tool reports in one line: bad input from outside (a config, a dataset, a checkpoint, a results
    file, an output folder), or a run that cannot go on (a diverged loss)."""


class ConfigError(ToolkitError, ValueError):
    """A config file, an override or a command-line value that is unknown, mistyped or out of range."""


class DatasetError(ToolkitError, ValueError):
    """A datasets root, a split or an image that cannot be used."""


class DatasetLayoutError(DatasetError):
    """A dataset folder that does not hold the layout expected."""


class CorruptImageError(DatasetError):
    """An image file that does not decode."""


class CheckpointError(ToolkitError, ValueError):
    """A file that cannot be read as a supported checkpoint, or that would run code if read."""


class ResultsError(ToolkitError, ValueError):
    """A results file (JSON) that is missing, unreadable or of the wrong shape."""


class OutputError(ToolkitError):
    """An output folder that is in use by another run, or cannot be written."""


class ClusterError(ToolkitError):
    """A job that cannot be submitted (no sbatch, a scheduler's refusal) or that failed (its log path named)."""
