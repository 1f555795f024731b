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
