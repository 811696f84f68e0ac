"""Command line of the maze experiment (chapter 9).

    python -m companion.maze [run] [--scale cpu|long|gpu] [flags]   every method, several seeds
    python -m companion.maze sweep [--samples 4 8 ...] [flags]       the same over N
    python -m companion.maze fixed [flags]                           few mazes, many epochs

Each command trains (SFT, then RL with each method from the same checkpoint), evaluates on the
held-out mazes, writes RUN_DIR/results.json (and --results PATH when given) and prints a table.
Re-running a command with the same run folder resumes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys

import numpy as np
import torch

from companion.maze.config import EXPERIMENTS, METHODS, SCALES, SWEEP_SAMPLES, MazeConfig, describe
from companion.maze.data import prepare_data
from companion.maze.env import prim_maze, render
from companion.maze.experiment import run_experiment
from companion.maze.provenance import RunFileError, write_json
from companion.maze.report import eval_samples, format_table, per_seed_gains, sweep_table

PROG = "python -m companion.maze"
_FLAGS = {  # config field -> (type, help)
    "cells": (int, "maze size in cells per side (2..8; the token grid is 2*cells+1 wide)"),
    "d_model": (int, "transformer width"),
    "n_layers": (int, "transformer layers"),
    "n_heads": (int, "attention heads (must divide the width)"),
    "sft_steps": (int, "supervised warm-start steps (>= 0)"),
    "sft_batch": (int, "mazes per SFT step (>= 1)"),
    "sft_lr": (float, "SFT learning rate (> 0)"),
    "rl_steps": (int, "RL steps per method (>= 0)"),
    "prompts_per_step": (int, "mazes per RL step, P (>= 1)"),
    "num_samples": (int, "rollouts per maze, N (>= 2)"),
    "lr": (float, "RL learning rate (> 0)"),
    "weight_decay": (float, "AdamW weight decay (>= 0)"),
    "grad_clip": (float, "gradient-norm clip (> 0)"),
    "train_pool": (int, "distinct training mazes (SFT draws from all of them)"),
    "rl_pool": (int, "RL draws from the first RL_POOL training mazes (0: all)"),
    "eval_mazes": (int, "held-out mazes"),
    "eval_samples": (int, "answers sampled per held-out maze, n (pass@k for k <= n)"),
    "probe_mazes": (int, "training mazes in the fixed probe set (0: none)"),
    "probe_samples": (int, "answers per probe maze"),
    "probe_every": (int, "RL steps between probes (0: never)"),
    "eval_every": (int, "RL steps between held-out evaluations (0: only at the end)"),
    "checkpoint_every": (int, "steps between checkpoints"),
    "device": (str, "torch device (default: the scale's)"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit status 2, no traceback
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["run", *EXPERIMENTS[1:]],
        default="run",
        help="run (default): compare the methods; sweep: over N; fixed: few mazes",
    )
    parser.add_argument(
        "--scale",
        choices=["auto", *SCALES],
        default="auto",
        help="preset sizes; auto: gpu on CUDA, cpu otherwise",
    )
    parser.add_argument("--out", default=None, help="run folder (default runs/maze_COMMAND_SCALE)")
    parser.add_argument("--results", default=None, help="also write the results JSON here")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    default_samples = " ".join(map(str, SWEEP_SAMPLES))
    parser.add_argument(
        "--samples",
        nargs="+",
        type=int,
        default=None,
        help=f"sweep only: the N to sweep (default {default_samples})",
    )
    for field, (kind, text) in _FLAGS.items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=kind, default=None, help=text)
    parser.add_argument(
        "--autocast",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast (default: the scale's)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--show-maze",
        type=int,
        metavar="CELLS",
        default=None,
        help="print one random maze with CELLS x CELLS cells and exit",
    )
    return parser


def build_config(args: argparse.Namespace) -> MazeConfig:
    """The config the flags ask for (ValueError/TypeError when a value is not allowed)."""
    experiment = "compare" if args.command == "run" else args.command
    scale = args.scale
    if scale == "auto":
        scale = "gpu" if torch.cuda.is_available() else "cpu"
    overrides = {f: getattr(args, f) for f in _FLAGS if getattr(args, f) is not None}
    if "lr" in overrides:
        overrides["rl_lr"] = overrides.pop("lr")
    if args.autocast is not None:
        overrides["autocast"] = args.autocast
    if args.methods:
        overrides["methods"] = tuple(args.methods)
    if args.seeds:
        overrides["seeds"] = tuple(args.seeds)
    return MazeConfig.for_scale(scale, experiment, **overrides)


def _as_flags(message: str) -> str:
    """``MazeConfig.rl_lr must ...`` -> ``--lr must ...``: name the flag the user typed."""

    def flag(match: re.Match) -> str:
        field = "lr" if match.group(1) == "rl_lr" else match.group(1)
        return "--" + field.replace("_", "-")

    return re.sub(r"MazeConfig\.(\w+)", flag, message)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.show_maze is not None:
        try:
            print(render(prim_maze(args.show_maze, np.random.default_rng(0))))
        except (TypeError, ValueError) as error:
            parser.error(str(error))
        return 0
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.samples is not None and args.command != "sweep":
        parser.error("--samples is for the sweep command")
    try:
        config = build_config(args)
        samples = None
        if args.command == "sweep":
            samples = tuple(args.samples or SWEEP_SAMPLES)
            for n in samples:
                dataclasses.replace(config, num_samples=n)  # validates each N
        if torch.device(config.device).type != "cuda" or torch.cuda.is_available():
            prepare_data(config)  # enough distinct mazes for these sizes? (cached for the run)
    except (TypeError, ValueError) as error:
        parser.error(_as_flags(str(error)))
    if torch.device(config.device).type == "cuda" and not torch.cuda.is_available():
        parser.error(
            f"the {config.scale} scale runs on {config.device}, but this torch "
            f"({torch.__version__}) sees no CUDA GPU; use --scale cpu or --scale long, or a "
            "machine with a CUDA GPU"
        )
    out = args.out or f"runs/maze_{args.command}_{config.scale}"
    print(describe(config))
    command = " ".join([PROG, *(sys.argv[1:] if argv is None else argv)])
    experiment = "compare" if args.command == "run" else args.command
    try:
        results = run_experiment(
            config,
            out,
            samples=samples,
            experiment=experiment,
            results_path=args.results,
            command=command,
            progress=not args.no_progress,
        )
    except RunFileError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    write_json(results, f"{out}/results.json")
    _print_summary(results)
    print(f"wall time {results['provenance']['wall_seconds']:.0f} s; results in {out}/results.json")
    return 0


def _print_summary(results: dict) -> None:
    if results["experiment"] == "sweep":
        n = eval_samples(results)
        for k in (1, n):
            table = sweep_table(results, k)
            print(f"pass@{k} (mean over seeds) by N = {results['num_samples']}:")
            print(f"  {'sft':<10}{table['sft'].mean():>8.3f}")
            for method in results["config"]["methods"]:
                row = "".join(f"{v:>8.3f}" for v in table[method].mean(1))
                print(f"  {method:<10}{row}")
        return
    print(format_table(results))
    methods = results["config"]["methods"]
    if "grpo" in methods and "maxrl" in methods:
        gains = per_seed_gains(results)
        text = ", ".join(
            "not reached" if g is None else f"k* = {g[0]} ({g[1]:.1f}x)" for g in gains
        )
        print(f"MaxRL reaching GRPO's pass@{eval_samples(results)}, per seed: {text}")


if __name__ == "__main__":
    sys.exit(main())
