"""Which local Python stands in for App Engine's runtime.

App Engine runs the services on the Python its `runtime:` names (python313).
Local checks of staged services use the same minor version where one is
installed (on PATH, or under pyenv), so they catch what only that version
breaks; else the newest 3.11+ found, else the Python running this.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

PREFERRED = ("3.13", "3.12", "3.11")


def _works(path: str) -> bool:
    try:
        subprocess.run(
            [path, "-c", "import sys, venv"],
            check=True,
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def candidates(version: str) -> list[str]:
    found = []
    on_path = shutil.which(f"python{version}")
    if on_path:
        found.append(on_path)
    pyenv = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    found += sorted(glob.glob(f"{pyenv}/versions/{version}*/bin/python{version}"))
    return found


def runtime_python() -> str:
    explicit = os.environ.get("RUNTIME_PYTHON")
    if explicit:
        return explicit
    for version in PREFERRED:
        for path in candidates(version):
            if _works(path):
                return path
    return getattr(sys, "_base_executable", sys.executable)
