"""The code and the notebooks pass ruff (lint and, for .py files, formatting)."""

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUFF = shutil.which("ruff", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("ruff")
PATHS = ["companion", "tests", "benchmarks", "scripts", "book"]


def run(*args: str) -> subprocess.CompletedProcess:
    assert RUFF is not None, "ruff is part of the test extra: pip install -e '.[test]'"
    return subprocess.run([RUFF, *args], cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_check():
    result = run("check", *PATHS)
    assert result.returncode == 0, result.stdout[-4000:]


def test_ruff_format():
    result = run("format", "--check", "--exclude", "*.ipynb", *PATHS)
    assert result.returncode == 0, result.stdout[-4000:]
