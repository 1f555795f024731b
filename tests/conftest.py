import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from sslt_demo.writer import make_demo_data

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """The small generated demo data (all layouts), made once per test session."""
    root = tmp_path_factory.mktemp("datasets") / "demo"
    make_demo_data(root, seed=0, size_name="small")
    return root


def run_tool(*args, env=None):
    """Run `python tools/<args>` from the repository root; return the CompletedProcess (text output)."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True, env=env)


_TOOLS = {}


def _tool_module(name):
    """tools/<name>.py loaded as a module (once)."""
    if name not in _TOOLS:
        spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _TOOLS[name] = module
    return _TOOLS[name]


@pytest.fixture
def tool(capsys):
    """tool(name, *args) -> (exit status, stdout, stderr): tools/<name>.py's main(args) run in this process through
    sslt_core.cli.run, as the command line would run it."""
    from sslt_core.cli import run

    def call(name, *args):
        message = ""
        try:
            run(_tool_module(name).main, [str(a) for a in args])
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) or exit_.code is None else 1
            message = exit_.code if isinstance(exit_.code, str) else ""
        captured = capsys.readouterr()
        return code or 0, captured.out, captured.err + (message + "\n" if message else "")

    return call
