"""Command line: ``python -m companion.maze [--scale cpu|gpu|auto] [--out DIR] ...``.

Runs SFT and RL for every method and seed, evaluates on the held-out mazes, writes
``results.json``, ``coverage.png`` and ``pass_rate_histograms.png`` to the run folder and prints
a table. Re-running with the same folder resumes from its checkpoints.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from companion.maze.env import prim_maze, render
from companion.maze.train import (
    METHODS,
    MazeConfig,
    describe,
    efficiency_gain,
    format_table,
    pass_at_k_curves,
    run_experiment,
    save_figures,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m companion.maze", description=__doc__)
    parser.add_argument(
        "--scale",
        choices=["auto", "cpu", "gpu"],
        default="auto",
        help="auto: gpu scale on CUDA, cpu scale otherwise",
    )
    parser.add_argument("--out", default="runs/maze", help="run folder (resumed if it exists)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    parser.add_argument(
        "--show-maze",
        type=int,
        metavar="CELLS",
        default=None,
        help="print one random maze with CELLS x CELLS cells and exit",
    )
    args = parser.parse_args(argv)
    if args.show_maze is not None:
        print(render(prim_maze(args.show_maze, np.random.default_rng(0))))
        return 0
    overrides = {}
    if args.methods:
        overrides["methods"] = tuple(args.methods)
    if args.seeds:
        overrides["seeds"] = tuple(args.seeds)
    if args.scale == "auto":
        config = MazeConfig.for_device(**overrides)
    else:
        config = getattr(MazeConfig, args.scale)(**overrides)
    print(describe(config))
    results = run_experiment(config, args.out, progress=not args.no_progress)
    print(format_table(results))
    methods = results["config"]["methods"]
    if "grpo" in methods and "maxrl" in methods:
        gain = efficiency_gain(
            pass_at_k_curves(results, "grpo").mean(0), pass_at_k_curves(results, "maxrl").mean(0)
        )
        print(
            "test-time scaling efficiency of MaxRL over GRPO:",
            "not reached" if gain is None else f"k* = {gain[0]}, gain = {gain[1]:.1f}x",
        )
    for path in save_figures(results, args.out):
        print("wrote", path)
    print("timings (s):", {k: round(v, 1) for k, v in results["timings"].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
