"""Imported first by the tools that use the `pretrain` package: Python puts tools/ at the front of the path
when a tool runs, where `import pretrain` would find tools/pretrain.py instead of the package."""
import sys
from pathlib import Path

_TOOLS = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _TOOLS]
