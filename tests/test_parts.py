"""The emulator stays a fixture: no core part imports `rlscale.emulator`, neither in its source (lazy imports
inside functions included) nor through anything it imports."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

CORE = ("rlscale.env", "rlscale.agent", "rlscale.controller", "rlscale.training")
EMULATOR = "rlscale.emulator"

# Imports every module of one part (extras installed, as in the tests), then lists the emulator's modules loaded.
IMPORT_ALL = """
import importlib, json, pkgutil, sys
part = importlib.import_module(sys.argv[1])
for module in pkgutil.walk_packages(part.__path__, part.__name__ + "."):
    importlib.import_module(module.name)
print(json.dumps(sorted(m for m in sys.modules if m == "rlscale.emulator" or m.startswith("rlscale.emulator."))))
"""


def emulator_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of each import statement of the emulator in `source`, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [(node.lineno, name) for name in names if name == EMULATOR or name.startswith(EMULATOR + ".")][:1]
    return found


@pytest.mark.parametrize("source, expected", [
    ("import rlscale.emulator.api", [(1, "rlscale.emulator.api")]),
    ("from rlscale.emulator.server import EmulatorServer", [(1, "rlscale.emulator.server")]),
    ("from rlscale import emulator", [(1, "rlscale.emulator")]),
    ("def serve():\n    from rlscale.emulator import api", [(2, "rlscale.emulator")]),
    ("from rlscale.env.state import ServiceState\nimport rlscale_emulator", []),
])
def test_emulator_imports_finds_every_form(source: str, expected: list[tuple[int, str]]) -> None:
    assert emulator_imports(source) == expected


@pytest.mark.parametrize("part", CORE)
def test_no_core_module_imports_the_emulator_in_its_source(part: str) -> None:
    folders = [Path(p) for p in importlib.import_module(part).__path__]
    offenders = [f"{path}:{line}: {name}" for folder in folders for path in sorted(folder.rglob("*.py"))
                 for line, name in emulator_imports(path.read_text())]
    assert offenders == []


@pytest.mark.parametrize("part", CORE)
def test_importing_every_core_module_loads_no_emulator_module(part: str) -> None:
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL, part], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []
