"""Notebook hygiene: executed in order, no stored errors, deterministic outputs, in _toc.yml.

nbval (run by the same pytest command) re-executes each notebook and compares its outputs;
these checks catch what nbval does not: stale or out-of-order execution, unlisted chapters,
unstable output formats, ignored cells without a following assertion.
"""

import json
import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(
    path
    for path in (ROOT / "book").rglob("*.ipynb")
    if "_build" not in path.parts and ".ipynb_checkpoints" not in path.parts
)
IGNORE_MARK = "# NBVAL_IGNORE_OUTPUT"


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [entry["file"] for entry in toc.get("chapters", [])]


def code_cells(path: pathlib.Path) -> list[dict]:
    notebook = json.loads(path.read_text())
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_book_has_chapters():
    assert len(NOTEBOOKS) >= 2


def test_every_toc_entry_exists_and_every_notebook_is_listed():
    listed = toc_files()
    for name in listed:
        assert (ROOT / f"{name}.ipynb").exists() or (ROOT / f"{name}.md").exists(), name
    for path in NOTEBOOKS:
        assert str(path.relative_to(ROOT).with_suffix("")) in listed, f"{path.name} not in _toc.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_in_order_without_errors(path):
    cells = code_cells(path)
    counts = [cell["execution_count"] for cell in cells]
    assert None not in counts, "some code cells were never executed: restart and run all"
    assert counts == list(range(1, len(counts) + 1)), "cells ran out of order: restart and run all"
    for cell in cells:
        for output in cell["outputs"]:
            assert output["output_type"] != "error", f"stored error in: {source(cell)[:80]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_are_stable(path):
    notebook = json.loads(path.read_text())
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    for cell in code_cells(path):
        ignored = source(cell).lstrip().startswith(IGNORE_MARK)
        for output in cell["outputs"]:
            data = output.get("data", {})
            assert "image/svg+xml" not in data, "figures must be PNG (SVG differs between runs)"
            text = "".join(data.get("text/plain", "")) + "".join(output.get("text", ""))
            if ignored:
                continue
            assert not re.search(r"0x[0-9a-f]{6,}", text), f"memory address in output: {text[:80]}"
            assert not re.search(r"\d+(\.\d+)?\s?(it/s|s/it)", text), "progress bar in output"
            if output["output_type"] == "stream":
                assert output["name"] != "stderr" or not text.strip(), (
                    f"stderr in a compared cell: {text[:120]}"
                )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_ignored_outputs_are_followed_by_assertions(path):
    cells = code_cells(path)
    for index, cell in enumerate(cells):
        if source(cell).lstrip().startswith(IGNORE_MARK):
            following = cells[index + 1 : index + 3]
            assert any("assert" in source(c) for c in following), (
                f"ignored cell without a following assertion: {source(cell)[:80]}"
            )


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem != "intro"], ids=lambda p: p.name)
def test_chapter_structure(path):
    notebook = json.loads(path.read_text())
    markdown = "".join(source(c) for c in notebook["cells"] if c["cell_type"] == "markdown")
    code = "\n".join(source(c) for c in code_cells(path))
    assert re.search(r"^# Chapter \d+", markdown, re.M), "first heading must be '# Chapter N: ...'"
    assert "assert" in code, "a chapter checks its claims with assertions"
    assert any("image/png" in o.get("data", {}) for c in code_cells(path) for o in c["outputs"]), (
        "every chapter has at least one figure"
    )
    assert markdown.lower().count("exercise") >= 3, "every chapter has at least 3 exercises"
