r"""The chapter's figures of maze results (matplotlib, the book's style and method colours).

Each function draws into new axes and returns the figure; markers tell overlapping curves apart.

Derived in: chapter 9.
"""

from __future__ import annotations

import numpy as np

from companion.maze.report import (
    compare,
    counts,
    default_ks,
    efficiency_gain,
    eval_samples,
    held_out_over_training,
    model_names,
    pass_at_k_curves,
    per_maze_pass_at_k,
    probe_curve,
    sweep_table,
)
from companion.plotting import method_color

LABELS = {
    "sft": "after SFT",
    "reinforce": "REINFORCE",
    "rloo": "RLOO",
    "grpo": "GRPO",
    "maxrl": "MaxRL (Alg. 1)",
}
MARKERS = {"sft": "s", "reinforce": "v", "rloo": "^", "grpo": "D", "maxrl": "o"}


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _offsets(names: list[str], width: float) -> dict[str, float]:
    """Small symmetric shifts along x, one per name, so that equal curves stay visible."""
    count = len(names)
    return {name: width * (i - (count - 1) / 2) for i, name in enumerate(names)}


def _style(name: str) -> dict:
    return dict(
        color=method_color(name), marker=MARKERS.get(name, "."), label=LABELS.get(name, name)
    )


def coverage_figure(results: dict, baseline: str = "grpo", method: str = "maxrl"):
    """Left: pass@k against k (log axis), mean over seeds with error bars of one sample
    standard deviation over seeds (ddof = 1), the baseline's best pass@k as a horizontal line and
    ``method``'s k* marked. Right: each method's pass@k minus the baseline's, with the 95 %
    paired bootstrap interval over held-out mazes as a band."""
    plt = _plt()
    n = eval_samples(results)
    ks = np.array(default_ks(n))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = model_names(results)
    shift = _offsets(names, 0.04)  # in log2 units of k, so that error bars do not overlap
    for name in names:
        curves = pass_at_k_curves(results, name)[:, ks - 1]  # (S, len(ks))
        spread = curves.std(0, ddof=1) if len(curves) > 1 else None
        left.errorbar(
            ks * 2 ** shift[name],
            curves.mean(0),
            yerr=spread,
            ls="--" if name == "sft" else "-",
            ms=5,
            capsize=2,
            elinewidth=0.8,
            **_style(name),
        )
    best = pass_at_k_curves(results, baseline).mean(0)
    left.axhline(
        best[-1], color=method_color(baseline), lw=1, ls=":", label=f"{LABELS[baseline]}'s pass@{n}"
    )
    gain = efficiency_gain(best, pass_at_k_curves(results, method).mean(0))
    if gain is not None:
        left.axvline(gain[0], color=method_color(method), lw=1, ls=":")
        left.annotate(
            f"$k^* = {gain[0]}$",
            (gain[0], best[-1]),
            textcoords="offset points",
            xytext=(-44, 8),
            color=method_color(method),
        )
    left.set(
        xscale="log",
        xlabel="$k$ (answers sampled per held-out maze)",
        ylabel="pass@$k$",
        title=f"held-out pass@$k$, mean $\\pm$ sd over {len(results['runs'])} seeds",
    )
    left.set_xscale("log", base=2)
    left.legend(fontsize=8)
    for name in results["config"]["methods"]:
        if name == baseline:
            continue
        diffs = [compare(results, name, baseline, int(k), resamples=2000) for k in ks]
        mid = [d["diff"] for d in diffs]
        right.fill_between(
            ks,
            [d["low"] for d in diffs],
            [d["high"] for d in diffs],
            color=method_color(name),
            alpha=0.15,
            lw=0,
        )
        right.plot(ks, mid, ms=5, **_style(name))
    right.axhline(0, color=method_color(baseline), lw=1)
    right.set_xscale("log", base=2)
    right.set(
        xlabel="$k$",
        ylabel=f"pass@$k$ minus {LABELS[baseline]}'s",
        title="difference, 95 % paired bootstrap band (mazes)",
    )
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def sweep_figure(results: dict):
    """:math:`-\\log \\mathrm{pass@}k` against N (log N axis) per method, for k = 1 and k = n:
    mean over seeds with error bars of one sample standard deviation (ddof = 1), the methods
    shifted a little along N so that the bars do not overlap."""
    plt = _plt()
    n, samples = eval_samples(results), np.array(results["num_samples"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    methods = results["config"]["methods"]
    shift = _offsets(methods, 0.04)  # in log2 units of N
    for ax, k in zip(axes, (1, n), strict=True):
        table = sweep_table(results, k)
        for method in methods:
            values = -np.log(table[method])  # (len(N), S)
            ax.errorbar(
                samples * 2 ** shift[method],
                values.mean(1),
                yerr=values.std(1, ddof=1) if values.shape[1] > 1 else None,
                ms=5,
                capsize=2,
                elinewidth=0.8,
                **_style(method),
            )
        ax.axhline(
            -np.log(table["sft"]).mean(),
            color=method_color("sft"),
            ls="--",
            lw=1,
            label=LABELS["sft"],
        )
        ax.set_xscale("log", base=2)
        ax.set(
            xlabel="$N$ (rollouts per maze during RL)",
            ylabel=f"$-\\log$ pass@${k}$",
            title=f"held-out $-\\log$ pass@${k}$, mean $\\pm$ sd over {len(results['runs'])} seeds",
        )
        ax.set_xticks(samples, [str(s) for s in samples])
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def training_figure(results: dict, ks: tuple[int, ...]):
    """Held-out pass@k over RL steps (0 = after SFT) per method, one panel per k; thin lines
    are seeds, thick lines their mean."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(ks), figsize=(5.5 * len(ks), 4), squeeze=False)
    methods = results["config"]["methods"]
    shift = _offsets(methods, 0.01 * results["config"]["rl_steps"])
    for ax, k in zip(axes[0], ks, strict=True):
        for method in methods:
            steps, values = held_out_over_training(results, method, k)
            steps = steps + shift[method]
            for row in values:
                ax.plot(steps, row, color=method_color(method), lw=0.6, alpha=0.35)
            ax.plot(steps, values.mean(0), ms=4, **_style(method))
        ax.set(
            xlabel="RL step",
            ylabel=f"held-out pass@${k}$",
            title=f"held-out pass@${k}$ (thick: mean, thin: each seed)",
        )
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def probe_figure(results: dict):
    """Mean reward on the fixed probe set of training mazes over RL steps (0 = after SFT);
    left: mean over seeds with the seeds' range as a band; right: each method's curve minus
    GRPO's on the same seed, averaged over seeds, with the seeds' range as a band."""
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    _, grpo = probe_curve(results, "grpo") if "grpo" in results["config"]["methods"] else (0, 0)
    for method in results["config"]["methods"]:
        steps, values = probe_curve(results, method)
        left.fill_between(
            steps, values.min(0), values.max(0), color=method_color(method), alpha=0.12, lw=0
        )
        left.plot(steps, values.mean(0), ms=3, **_style(method))
        if method != "grpo":
            gap = values - grpo  # (S, T), seed by seed
            right.fill_between(
                steps, gap.min(0), gap.max(0), color=method_color(method), alpha=0.12, lw=0
            )
            right.plot(steps, gap.mean(0), ms=3, **_style(method))
    right.axhline(0, color=method_color("grpo"), lw=1)
    left.set(
        xlabel="RL step",
        ylabel="mean reward on the probe mazes",
        title="fixed probe set of training mazes (band: seeds' range)",
    )
    right.set(
        xlabel="RL step",
        ylabel="probe reward minus GRPO's",
        title="difference to GRPO (band: seeds' range)",
    )
    left.legend(fontsize=8)
    fig.tight_layout()
    return fig


def histogram_figure(results: dict):
    """Per-maze pass rate c/n on the held-out mazes, pooled over seeds, one panel per model."""
    plt = _plt()
    names, n = model_names(results), eval_samples(results)
    fig, axes = plt.subplots(1, len(names), figsize=(2.3 * len(names), 2.8), sharey=True)
    bins = np.linspace(0, 1, 11)
    for ax, name in zip(axes, names, strict=True):
        rates = counts(results, name).ravel() / n
        ax.hist(rates, bins=bins, color=method_color(name))
        ax.set(title=LABELS[name], xlabel="pass rate $c/n$")
    axes[0].set_ylabel(r"held-out mazes $\times$ seeds")
    fig.tight_layout()
    return fig


def per_maze_pass(results: dict, name: str, k: int) -> np.ndarray:
    """Per-maze pass@k ``(S, M)`` of model ``name`` (for tables in the chapter)."""
    return per_maze_pass_at_k(counts(results, name), eval_samples(results), k)
