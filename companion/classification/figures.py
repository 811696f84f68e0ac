r"""Figures of a sweep: histories with spread, the N-sweep with the analytic share, tuning, gaps.

Every function draws on a given matplotlib ``Axes`` and returns it. Method colours come from
:data:`companion.plotting.METHOD_COLORS`; a method's runs at different N share its colour and
get darker as N grows; every line has markers, and spreads are shaded (min-max over seeds, or
mean ± std where stated).

Derived in: chapter 8.
"""

from __future__ import annotations

import numpy as np

from companion.classification.config import METHOD_NAMES
from companion.classification.report import (
    Key,
    group_runs,
    label_of,
    mean_std,
    order,
    sample_count_sweep,
    tuning_table,
)
from companion.classification.train import RunResult
from companion.plotting import method_color

MARKERS: dict[str, str] = {
    "cross_entropy": "o",
    "reinforce": "^",
    "rloo": "v",
    "grpo": "D",
    "maxrl": "s",
}


def metric_name(metric: str) -> str:
    """How a metric is written on an axis: ``"NLL"``, ``"pass@1"``, ..."""
    return "NLL" if metric == "nll" else metric


#: Horizontal offsets (factors on N) so that methods' markers at the same N do not hide each other.
OFFSETS: dict[str, float] = {
    "cross_entropy": 1.0,
    "reinforce": 0.85,
    "rloo": 0.93,
    "grpo": 1.08,
    "maxrl": 1.17,
}


def style(key: Key, sample_counts: list[int] | None = None) -> dict[str, object]:
    """Colour, marker and line style of ``(optimizer, method, N)``: darker as N grows among
    ``sample_counts``; cross-entropy dashed."""
    _, method, n = key
    result: dict[str, object] = {"color": method_color(method), "marker": MARKERS[method]}
    if sample_counts and len(sample_counts) > 1 and n in sample_counts:
        rank = sorted(sample_counts).index(n) / (len(sample_counts) - 1)
        result["alpha"] = 0.35 + 0.65 * rank
    if method == "cross_entropy":
        result["linestyle"] = "--"
    return result


def _history(group: list[RunResult], metric: str) -> tuple[np.ndarray, np.ndarray]:
    steps = group[0].steps
    if any(run.steps != steps for run in group):
        raise ValueError(f"{label_of(_key(group))}: the seeds were evaluated at different steps")
    return np.array(steps), np.array([run.metrics[metric] for run in group])  # (T,), (S, T)


def _key(group: list[RunResult]) -> Key:
    c = group[0].config
    return c["optimizer"], c["method"], c["num_samples"]


def plot_histories(
    ax, runs: list[RunResult], keys: list[Key], metric: str, *, markers_every: int = 5
):
    """Validation ``metric`` against step for each key: mean over seeds (line with markers)
    and the min-max range over seeds (shaded)."""
    groups = group_runs(runs)
    counts: dict[str, list[int]] = {}
    for _, method, n in keys:
        counts.setdefault(method, []).append(n)
    for index, key in enumerate(keys):
        steps, values = _history(groups[key], metric)
        look = style(key, counts[key[1]])
        every = (index % markers_every, markers_every)  # shifted so that no marker hides another
        ax.fill_between(steps, values.min(0), values.max(0), color=look["color"], alpha=0.15, lw=0)
        ax.plot(steps, values.mean(0), label=label_of(key), markevery=every, ms=4, **look)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"validation {metric_name(metric)}")
    return ax


def plot_difference(
    ax,
    runs: list[RunResult],
    key: Key,
    reference: Key,
    metric: str,
    *,
    markers_every: int = 5,
    sample_counts: list[int] | None = None,
):
    """``metric(key) - metric(reference)`` against step, paired by seed: the mean difference
    (line with markers) and its min-max range over seeds (shaded), with a zero line;
    ``sample_counts`` shades the line as in :func:`style`."""
    groups = group_runs(runs)
    steps, values = _history(groups[key], metric)
    ref_steps, ref_values = _history(groups[reference], metric)
    common = np.intersect1d(steps, ref_steps)
    difference = values[:, np.isin(steps, common)] - ref_values[:, np.isin(ref_steps, common)]
    look = style(key, sample_counts)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.fill_between(
        common, difference.min(0), difference.max(0), color=look["color"], alpha=0.2, lw=0
    )
    ax.plot(common, difference.mean(0), markevery=markers_every, ms=4, label=label_of(key), **look)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{metric_name(metric)} minus {label_of(reference)}")
    return ax


def plot_sample_count_sweep(
    ax, runs: list[RunResult], optimizer: str, metric: str, step: int, *, reference: bool = True
):
    """Final ``metric`` against N (log axis) per method: mean ± std over seeds (error bars);
    cross-entropy, which samples nothing, as a horizontal band (mean ± std)."""
    sweep = sample_count_sweep(runs, optimizer, metric, step)
    for method, (ns, means, stds) in sweep.items():
        if method == "cross_entropy":
            if reference:
                mean, std = means[0], stds[0]
                color = method_color(method)
                ax.axhspan(mean - std, mean + std, color=color, alpha=0.15, lw=0)
                ax.axhline(mean, color=color, ls="--", label="cross-entropy")
            continue
        ax.errorbar(ns * OFFSETS[method], means, yerr=stds, capsize=2, ms=5,
                    label=METHOD_NAMES[method], color=method_color(method),
                    marker=MARKERS[method])  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sampled labels per example $N$")
    ax.set_ylabel(f"validation {metric_name(metric)} at step {step}")
    return ax


def normalised_progress(
    runs: list[RunResult], optimizer: str, metric: str, step: int
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    r"""Each method's progress as a fraction of cross-entropy's, seed by seed:
    :math:`(m - m_0)/(m_{\mathrm{CE}} - m_0)` with :math:`m_0` the untrained value; returns
    ``{method: (N values, mean, std)}`` over seeds."""
    groups = group_runs(runs)
    ce = groups[(optimizer, "cross_entropy", 1)]
    result: dict[str, list[tuple[int, float, float]]] = {}
    for (opt, method, n), group in sorted(groups.items(), key=lambda kv: order(kv[0])):
        if opt != optimizer or method == "cross_entropy" or any(step not in r.steps for r in group):
            continue
        fractions = []
        for run in group:
            (partner,) = [c for c in ce if c.config["task_seed"] == run.config["task_seed"]]
            start = run.metrics[metric][0]
            done = partner.metrics[metric][partner.steps.index(step)] - start
            fractions.append((run.metrics[metric][run.steps.index(step)] - start) / done)
        result.setdefault(method, []).append((n, *mean_std(fractions)))
    return {m: tuple(np.array(c) for c in zip(*rows, strict=True)) for m, rows in result.items()}


def plot_progress_and_share(
    ax,
    runs: list[RunResult],
    optimizer: str,
    metric: str,
    step: int,
    shares: dict[str, tuple[np.ndarray, str]],
):
    """Markers: each method's progress in ``metric`` as a fraction of cross-entropy's
    (:func:`normalised_progress`, mean ± std over seeds; log axis, so values <= 0 are not
    drawn). Dotted lines: ``shares[name] = (values over the same N, label)``, e.g. the analytic
    share of the maximum-likelihood gradient a method keeps, drawn in ``name``'s colour."""
    progress = normalised_progress(runs, optimizer, metric, step)
    for method, (ns, means, stds) in progress.items():
        ax.errorbar(ns * OFFSETS[method], means, yerr=stds, ls="none", capsize=2, ms=5,
                    marker=MARKERS[method], color=method_color(method),
                    label=METHOD_NAMES[method])  # fmt: skip
    for name, (values, label) in shares.items():
        ax.plot(ns, values, color=method_color(name), ls=":", lw=1.5, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sampled labels per example $N$")
    ax.set_ylabel(f"gain in {metric_name(metric)} / cross-entropy's gain")
    return ax


def plot_tuning(ax, tune_runs: list[RunResult], optimizer: str, metric: str = "nll"):
    """Mean final ``metric`` over the tuning seeds against the learning rate (log axis; methods
    shifted slightly sideways so that none hides another), one line per method; a diverged rate
    is left out (it counts as infinitely bad)."""
    rows = tuning_table(tune_runs)
    for method in MARKERS:
        mine = [r for r in rows if r["optimizer"] == optimizer and r["method"] == method]
        mine = [r for r in mine if np.isfinite(r["nll"])]
        if mine:
            ax.plot([r["lr"] * OFFSETS[method] for r in mine], [r[metric] for r in mine],
                    color=method_color(method), marker=MARKERS[method], ms=5,
                    label=METHOD_NAMES[method])  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel(f"learning rate ({'SGD' if optimizer == 'sgd' else 'Adam'})")
    ax.set_ylabel(f"mean final validation {metric_name(metric)}")
    return ax
