"""The built site in a real browser: every page shows typeset math and its figures, offline.

Needs the site built by ``make book`` (``make test`` builds it first) and Debian's
``chromium``. Outside CI a missing browser skips these tests; in CI (``CI`` set) it fails.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

if CHROMIUM is None:
    if os.environ.get("CI"):
        raise RuntimeError("tests/test_site.py needs Debian's chromium; .ci/run installs it")
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)


def pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [entry["file"] for entry in toc.get("chapters", [])]


def rendered_dom(page: pathlib.Path) -> str:
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-background-networking",
                "--no-first-run",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=10000",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def expected_counts(name: str) -> tuple[int, int]:
    """(formulas, figures) in the source: display/inline math spans and PNG outputs."""
    notebook = json.loads((ROOT / f"{name}.ipynb").read_text())
    markdown = "".join(
        "".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown"
    )
    formulas = len(re.findall(r"\$\$.+?\$\$|\$[^$\n]+?\$", markdown, re.S))
    figures = sum(
        "image/png" in o.get("data", {})
        for c in notebook["cells"]
        if c["cell_type"] == "code"
        for o in c["outputs"]
    )
    return formulas, figures


def test_site_was_built():
    assert (HTML / "index.html").exists(), "build the site first: make book"


def test_mathjax_is_local():
    script = HTML / "_static" / "mathjax" / "tex-chtml.js"
    assert script.exists(), "MathJax must be served from _static/mathjax"
    for page in pages():
        html = (HTML / f"{page}.html").read_text()
        assert "mathjax/tex-chtml.js" in html
        assert not re.search(r"<script[^>]+src=\"https?://[^\"]*mathjax", html, re.I), (
            f"{page}: MathJax loaded from the network"
        )


@pytest.mark.parametrize("name", pages())
def test_page_typesets_math_and_shows_figures(name):
    dom = rendered_dom(HTML / f"{name}.html")
    formulas, figures = expected_counts(name)
    rendered = dom.count("<mjx-container")
    assert rendered >= formulas > 0, f"{name}: {rendered} typeset formulas, {formulas} in source"
    assert "\\(" not in re.sub(r"<(script|pre|code)[\s\S]*?</\1>", "", dom), (
        f"{name}: raw TeX left on the page"
    )
    images = len(re.findall(r"<img[^>]+src=\"[^\"]*\.png\"", dom))
    assert images >= figures, f"{name}: {images} images shown, {figures} figures in the notebook"
