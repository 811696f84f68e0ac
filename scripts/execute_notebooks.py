"""Restart and run notebooks in place, so that their stored outputs are fresh and in order.

    python scripts/execute_notebooks.py book/01_running_example.ipynb [more.ipynb ...]
    python scripts/execute_notebooks.py --all        # every notebook listed in _toc.yml
    python scripts/execute_notebooks.py --missing    # those in _toc.yml never run to the end

``make book`` runs ``--missing`` before building the site with execution off: a notebook is
executed only when one of its code cells has never run. (Jupyter Book's own ``auto`` mode would
re-execute any notebook with one code cell that prints nothing, replacing stored outputs.)

Each notebook runs in a fresh kernel from the project root's Python (the one running this
script), with the working directory set to the notebook's folder. A cell error stops that
notebook and is reported; nothing is written for it. Prints the execution time of each notebook.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import nbclient
import nbformat
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]


def toc_notebooks() -> list[pathlib.Path]:
    """Notebooks listed in ``_toc.yml``, in book order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [entry["file"] for entry in toc.get("chapters", [])]
    return [ROOT / f"{name}.ipynb" for name in files if (ROOT / f"{name}.ipynb").exists()]


def never_executed(path: pathlib.Path) -> bool:
    """True when some code cell of the notebook has no execution count."""
    notebook = nbformat.read(path, as_version=4)
    return any(
        cell.cell_type == "code" and cell.get("execution_count") is None for cell in notebook.cells
    )


def execute(path: pathlib.Path, timeout: int) -> float:
    """Execute one notebook in place; return the wall time in seconds."""
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = nbclient.NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    elapsed = time.perf_counter() - start
    nbformat.write(notebook, path)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=pathlib.Path)
    parser.add_argument("--all", action="store_true", help="every notebook in _toc.yml")
    parser.add_argument(
        "--missing", action="store_true", help="notebooks in _toc.yml with unexecuted cells"
    )
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per cell")
    args = parser.parse_args(argv)
    if args.missing:
        paths = [path for path in toc_notebooks() if never_executed(path)]
        if not paths:
            print("every notebook in _toc.yml has stored outputs")
            return 0
    else:
        paths = toc_notebooks() if args.all else args.notebooks
    if not paths:
        parser.error("name notebooks, or pass --all or --missing")
    failed = 0
    for path in paths:
        try:
            print(f"{path.name}: {execute(path.resolve(), args.timeout):.1f} s", flush=True)
        except nbclient.exceptions.CellExecutionError as error:
            failed += 1
            print(f"{path.name}: FAILED\n{str(error)[:2000]}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
