"""One figure style for the whole book.

Use :func:`book_style` as a context manager (or call :func:`use_book_style` once per
notebook), take colours from :data:`METHOD_COLORS`, and let notebooks render PNG figures
(``%config InlineBackend.figure_formats = ["png"]``) so stored outputs are stable.
"""

from __future__ import annotations

import contextlib

import matplotlib as mpl

#: One colour per method, used by every chapter.
METHOD_COLORS: dict[str, str] = {
    "rl": "#7f7f7f",
    "reinforce": "#7f7f7f",
    "rloo": "#2ca02c",
    "grpo": "#ff7f0e",
    "dr_grpo": "#bcbd22",
    "maxrl": "#1f77b4",
    "maxrl_divide_by_k": "#17becf",
    "maxrl_control_variate": "#9467bd",
    "ml": "#d62728",
    "cross_entropy": "#d62728",
    "sft": "#8c564b",
}

BOOK_RC: dict[str, object] = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.8,
    "svg.hashsalt": "maxrl-book",
    "path.simplify": True,
}


def use_book_style() -> None:
    """Apply the book's matplotlib settings globally."""
    mpl.rcParams.update(BOOK_RC)


@contextlib.contextmanager
def book_style():
    """Context manager applying the book's matplotlib settings temporarily."""
    with mpl.rc_context(BOOK_RC):
        yield


def method_color(name: str) -> str:
    """Colour of a method; unknown names raise ``KeyError`` listing the known ones."""
    try:
        return METHOD_COLORS[name]
    except KeyError:
        raise KeyError(f"no colour for {name!r}; known: {sorted(METHOD_COLORS)}") from None
