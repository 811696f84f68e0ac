"""Tests of companion.classification.figures: every figure draws what it says."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure
from test_classification_report import make_run

from companion.classification import figures
from companion.plotting import method_color


@pytest.fixture
def runs():
    result = [make_run("cross_entropy", seed=s, nll=(7.0, 3.0 - 0.1 * s, 2.0)) for s in (0, 1)]
    for n in (2, 8):
        result += [
            make_run("maxrl", n, seed=s, nll=(7.0, 7.0 - n / 2, 7.0 - n / 2 - s)) for s in (0, 1)
        ]
        result += [make_run("reinforce", n, seed=s, nll=(7.0, 6.5, 6.0)) for s in (0, 1)]
    return result


def _axes():
    return Figure().add_subplot()


def test_style_darkens_with_n_and_dashes_cross_entropy():
    light = figures.style(("sgd", "maxrl", 2), [2, 8, 32])
    dark = figures.style(("sgd", "maxrl", 32), [2, 8, 32])
    assert light["alpha"] < dark["alpha"] == 1.0 and light["color"] == method_color("maxrl")
    assert figures.style(("sgd", "cross_entropy", 1))["linestyle"] == "--"
    assert len(set(figures.MARKERS.values())) == len(figures.MARKERS)


def test_histories_draw_the_mean_and_the_range(runs):
    keys = [("sgd", "cross_entropy", 1), ("sgd", "maxrl", 8)]
    ax = figures.plot_histories(_axes(), runs, keys, "nll")
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["cross-entropy", "MaxRL N=8"]
    assert lines[1].get_ydata().tolist() == [7.0, 3.0, 2.5]  # mean of (7, 3, 3) and (7, 3, 2)
    assert len(ax.collections) == 2 and all(line.get_marker() != "None" for line in lines)
    assert [line.get_markevery() for line in lines] == [(0, 5), (1, 5)]  # shifted markers
    assert ax.get_ylabel() == "validation NLL"


def test_difference_is_paired_by_seed(runs):
    ax = figures.plot_difference(
        _axes(), runs, ("sgd", "maxrl", 8), ("sgd", "cross_entropy", 1), "nll"
    )
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "MaxRL N=8"]
    # seed 0: (0, 0.0, 1.0); seed 1: (0, 0.1, 0.0)
    assert line.get_ydata() == pytest.approx([0.0, 0.05, 0.5])


def test_sample_count_sweep_and_progress(runs):
    ax = figures.plot_sample_count_sweep(_axes(), runs, "sgd", "nll", 100)
    assert ax.get_xscale() == "log"
    labels = [c.get_label() for c in ax.containers]
    assert labels == ["REINFORCE", "MaxRL"]  # the book's order of methods
    progress = figures.normalised_progress(runs, "sgd", "nll", 100)
    ns, mean, std = progress["maxrl"]
    # seed 0: (6 - 7) / (3 - 7) and (3 - 7) / (3 - 7); seed 1: (6 - 7) / (2.9 - 7), ...
    expected = [np.mean([0.25, 1 / 4.1]), np.mean([1.0, 4 / 4.1])]
    assert ns.tolist() == [2, 8] and mean == pytest.approx(expected)
    shares = {
        "maxrl": (np.array([0.1, 0.5]), "MaxRL share"),
        "reinforce": (np.array([0.01] * 2), "R"),
    }
    ax = figures.plot_progress_and_share(_axes(), runs, "sgd", "nll", 100, shares)
    dotted = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert [line.get_ydata().tolist() for line in dotted] == [[0.1, 0.5], [0.01, 0.01]]
    assert [line.get_label() for line in dotted] == ["MaxRL share", "R"]


def test_tuning_leaves_out_diverged_rates():
    tune = [
        make_run("maxrl", 4, seed=s, lr=lr, nll=(7.0, lr)) for s in (0, 1) for lr in (1.0, 10.0)
    ]
    tune.append(make_run("maxrl", 4, seed=0, lr=100.0, error="NaN"))
    ax = figures.plot_tuning(_axes(), tune, "sgd")
    (line,) = ax.get_lines()
    offset = figures.OFFSETS["maxrl"]
    assert line.get_xdata().tolist() == [offset, 10 * offset] and ax.get_xscale() == "log"
    assert line.get_ydata().tolist() == [1.0, 10.0]
