"""Command line: ``python -m companion.classification {run,sweep,report} ...``.

* ``run``: one run (every config field has a flag); writes one JSON file with provenance.
* ``sweep``: the learning-rate tuning and the comparison over methods, N and seeds of a named
  scale (``cpu``, ``long``, ``gpu``); resumable: runs whose JSON exists are skipped.
* ``report``: the tables of a sweep folder (chosen rates, final metrics over seeds).

A bad value is a usage error: one line on stderr, exit status 2, nothing written. Once every
value is valid the output folder is created, before any training, so that a folder that
cannot be made is a usage error too.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

import torch

from companion.classification import report
from companion.classification.config import METHODS, OPTIMIZERS, REGIME, SMALL, ClassificationConfig
from companion.classification.sweep import (
    SELECTION_METRICS,
    check_output_folder,
    execute,
    main_configs,
    plan_for_scale,
    run_path,
    run_sweep,
    tune_configs,
    write_json,
)
from companion.runtime import default_device


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (no usage block), exit status 2."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message}\n")


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one int")
    return values


def _choices(allowed: tuple[str, ...]):
    def parse(text: str) -> tuple[str, ...]:
        values = tuple(item for item in text.split(",") if item)
        unknown = [v for v in values if v not in allowed]
        if unknown or not values:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated subset of {allowed}, got {text!r}"
            )
        return values

    return parse


_RUN_FLAGS = [  # (flag, config field, type)
    ("--method", "method", str),
    ("--n", "num_samples", int),
    ("--optimizer", "optimizer", str),
    ("--lr", "learning_rate", float),
    ("--steps", "steps", int),
    ("--batch-size", "batch_size", int),
    ("--eval-every", "eval_every", int),
    ("--task-seed", "task_seed", int),
    ("--train-seed", "train_seed", int),
    ("--num-classes", "num_classes", int),
    ("--input-dim", "input_dim", int),
    ("--label-temperature", "label_temperature", float),
    ("--train-size", "train_size", int),
    ("--validation-size", "validation_size", int),
    ("--pass-at-k", "pass_at_ks", _ints),
]


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m companion.classification``."""
    parser = _Parser(prog="python -m companion.classification", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train one run and write its JSON")
    run.add_argument(
        "--scale", choices=("cpu", "long"), default="long", help="defaults of the other flags"
    )
    for flag, name, kind in _RUN_FLAGS:
        run.add_argument(flag, dest=name, type=kind, default=None, help=f"config field {name}")
    run.add_argument("--out", default="runs/classification", help="folder of the JSON file")
    sweep = sub.add_parser(
        "sweep", help="tune the learning rates, then compare methods over N and seeds"
    )
    sweep.add_argument("--scale", choices=("cpu", "long", "gpu"), default="long")
    sweep.add_argument(
        "--out", default=None, help="results folder (default runs/classification-SCALE)"
    )
    sweep.add_argument("--steps", type=int, help="steps of every run (the plan's base.steps)")
    sweep.add_argument("--long-steps", type=int, help="steps of the long runs")
    sweep.add_argument("--seeds", type=_ints, help="comparison seeds")
    sweep.add_argument("--tune-seeds", type=_ints, help="learning-rate tuning seeds")
    sweep.add_argument("--methods", type=_choices(METHODS), help=f"subset of {','.join(METHODS)}")
    sweep.add_argument("--optimizers", type=_choices(OPTIMIZERS), help="subset of sgd,adam")
    sweep.add_argument("--n", type=_ints, help="N values of the comparison (every optimizer)")
    sweep.add_argument("--selection-metric", choices=SELECTION_METRICS)
    sweep.add_argument(
        "--grid-extensions", type=int, help="rates added past a grid edge that wins (default 2)"
    )
    sweep.add_argument("--dry-run", action="store_true", help="print the plan's size and exit")
    report_parser = sub.add_parser("report", help="print the tables of a sweep folder")
    report_parser.add_argument("results", help="a folder written by sweep")
    for command in (run, sweep):
        command.add_argument(
            "--device", default=None, help="cpu or cuda (default: cuda if present)"
        )
        command.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
        command.add_argument("--progress", action="store_true", help="tqdm bars on stderr")
    return parser


def _device(parser, args) -> torch.device:
    try:
        device = torch.device(args.device) if args.device else default_device()
    except RuntimeError as error:
        parser.error(f"--device: {error}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    return device


def _run_config(args) -> ClassificationConfig:
    base = SMALL if args.scale == "cpu" else REGIME
    overrides = {name: getattr(args, name) for _, name, _ in _RUN_FLAGS}
    overrides = {name: value for name, value in overrides.items() if value is not None}
    if overrides.get("method", base.method) == "cross_entropy":
        overrides.setdefault("num_samples", 1)
    if "optimizer" in overrides and "learning_rate" not in overrides:
        overrides["learning_rate"] = None  # the optimizer's default
    return dataclasses.replace(base, **overrides)


def _make_folder(parser, folder) -> None:
    """Create ``folder`` once the config is valid, so that a folder that cannot be made is a
    usage error before training rather than a lost run after it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"output folder {folder}: {error.strerror or error}")


def _plan(args):
    plan = plan_for_scale(args.scale)
    changes: dict[str, object] = {}
    if args.steps is not None:
        changes["base"] = dataclasses.replace(plan.base, steps=args.steps)
        if args.long_steps is None:
            changes["long_steps"] = max(plan.long_steps, args.steps)
    if args.long_steps is not None:
        changes["long_steps"] = args.long_steps
    for name in ("seeds", "tune_seeds", "methods", "selection_metric", "grid_extensions"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    optimizers = args.optimizers or tuple(plan.learning_rates)
    missing = [o for o in optimizers if o not in plan.learning_rates]
    if missing:
        raise ValueError(f"--optimizers: the {args.scale} scale has no {missing}")
    counts = {o: args.n or plan.sample_counts[o] for o in optimizers}
    changes["learning_rates"] = {o: plan.learning_rates[o] for o in optimizers}
    changes["sample_counts"] = counts
    methods = changes.get("methods", plan.methods)
    changes["long_runs"] = tuple(  # long runs outside the narrowed plan are dropped
        (o, m, n)
        for o, m, n in plan.long_runs
        if o in optimizers and m in methods and (m == "cross_entropy" or n in counts[o])
    )
    return dataclasses.replace(plan, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "report":
        return _report(parser, args.results)
    device = _device(parser, args)
    try:
        if args.command == "run":
            config = _run_config(args)
            out = check_output_folder(args.out)
            _make_folder(parser, run_path(out, "run", config).parent)
        else:
            if args.scale == "gpu" and device.type != "cuda":
                parser.error("--scale gpu needs a CUDA device; on a CPU use --scale long")
            plan = _plan(args)
            out = check_output_folder(args.out or f"runs/classification-{args.scale}")
            if not args.dry_run:
                _make_folder(parser, out)
    except (ValueError, TypeError) as error:
        parser.error(str(error))
    torch.set_num_threads(args.threads)
    if args.command == "run":
        result = execute(config, device, progress=args.progress)
        path = run_path(out, "run", config)
        write_json(path, result.to_dict())
        state = (
            result.error or f"nll {result.final('nll'):.4f}, pass@1 {result.final('pass@1'):.4f}"
        )
        print(f"{config.label} ({config.optimizer}, lr {config.learning_rate:g}): {state}")
        print(f"wrote {path}")
        return 0
    if args.dry_run:
        tuned = tune_configs(plan)
        main_runs = main_configs(
            plan, {o: dict.fromkeys(plan.methods, 1.0) for o in plan.learning_rates}
        )
        rollouts = sum(c.steps * c.batch_size * c.num_samples for c in tuned + main_runs)
        print(f"{len(tuned)} tuning runs, {len(main_runs)} comparison runs")
        print(f"{rollouts:.3g} sampled labels in all")
        return 0
    chosen = run_sweep(plan, out, device, progress=args.progress)
    print(f"chosen learning rates ({plan.selection_metric}): {chosen}; results in {out}")
    return 0


def _report(parser, folder: str) -> int:
    try:
        plan = report.load_plan(folder)
    except (OSError, ValueError, KeyError) as error:
        parser.error(f"{folder}: not a sweep folder ({error})")
    for row in report.tuning_table(report.load_runs(folder, "tune")):
        print(
            f"tune {row['optimizer']:4s} {row['method']:13s} lr {row['lr']:<6g} "
            f"nll {row['nll']:8.4f} pass@1 {row['pass@1']:.4f} diverged {row['diverged']}"
        )
    runs = report.load_runs(folder, "main")
    for step in sorted({plan.base.steps, plan.long_steps}):
        print(f"\nstep {step} (mean ± std over seeds, ddof = 1)")
        metrics = ("nll", "pass@1", *(f"pass@{k}" for k in plan.base.pass_at_ks))
        print(report.format_table(report.final_table(runs, step, metrics), metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
