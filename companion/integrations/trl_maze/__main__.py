r"""Train the maze policy with MaxRL (or another estimator) inside TRL, or compare estimators.

One run, evaluated on held-out mazes, the model saved::

    python -m companion.integrations.trl_maze run --output-dir runs/trl_maze

Two CPU processes (gloo), 3 prompts x 8 completions per step, so one group straddles them::

    torchrun --nproc_per_node 2 -m companion.integrations.trl_maze run --cells 2 --steps 2 \
        --prompts-per-step 3 --eval-mazes 0 --expect-world-size 2 --check-advantages

Several GPUs (one process per GPU, NCCL)::

    accelerate launch --multi_gpu --num_processes 4 --num_machines 1 --mixed_precision no \
        --dynamo_backend no -m companion.integrations.trl_maze run --steps 200 \
        --expect-world-size 4

(``accelerate launch --cpu --num_processes 2`` starts ONE process without an error, hence
``--expect-world-size``: the run fails unless it really has that many processes.)

A paired comparison, the same warm start per seed, written as JSON with provenance (and a
seconds-long slice of the first seed, :func:`~companion.integrations.trl_maze.train.slice_config`,
to re-run and compare)::

    python -m companion.integrations.trl_maze compare --methods maxrl grpo --seeds 0 1 2 \
        --output-dir book/results/10_scale

With ``--check-advantages`` every process records what reaches TRL's ``_compute_loss``; the
records of all processes are gathered, regrouped by prompt (a group split over two processes is
joined again) and, group by group, the applied advantages must equal ``companion.estimators``
applied to the verifier's rewards of the same completions.

Derived in: chapter 10.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from companion.integrations.trl import (
    CompanionGRPOTrainer,
    RecordLossInputs,
    gathered_groups,
    resolve_advantage,
)
from companion.integrations.trl_maze.train import (
    TRLMazeConfig,
    compare_with_trl,
    slice_config,
    train_maze_with_trl,
)
from companion.maze.env import decode_prompt, verify

COMPARISON_FILE = "trl_maze_comparison.json"


class RecordingCompanionGRPOTrainer(RecordLossInputs, CompanionGRPOTrainer):
    """:class:`CompanionGRPOTrainer` that also keeps every input of ``_compute_loss``."""


def check_gathered_advantages(
    loss_inputs: list, advantage: str, num_generations: int
) -> dict[str, int]:
    r"""Assert that every group, gathered over all processes, has ``num_generations`` rows whose
    applied advantages equal the companion estimator on the verifier's rewards; return counts
    of groups checked, groups split over processes, and groups with a nonzero advantage.
    Collective under ``torch.distributed``.

    Derived in: chapter 10.
    """
    _, advantage_fn = resolve_advantage(advantage)
    counts = {"groups": 0, "split": 0, "nonzero": 0, "split_nonzero": 0}
    for prompt, completions, applied, ranks in gathered_groups(loss_inputs):
        if len(completions) != num_generations:
            raise AssertionError(
                f"a gathered group has {len(completions)} completions, expected {num_generations}"
            )
        maze = decode_prompt(prompt)
        rewards = torch.tensor([[float(verify(maze, ids)) for ids in completions]])
        expected = advantage_fn(rewards)[0]
        if not torch.allclose(applied, expected, rtol=1e-6, atol=1e-6):
            raise AssertionError(
                f"advantages reaching the loss {applied.tolist()} (ranks {ranks}) differ from "
                f"{advantage}({rewards[0].tolist()}) = {expected.tolist()}"
            )
        split, nonzero = len(set(ranks)) > 1, bool((expected != 0).any())
        counts["groups"] += 1
        counts["split"] += split
        counts["nonzero"] += nonzero
        counts["split_nonzero"] += split and nonzero
    return counts


def _config(args: argparse.Namespace, **overrides) -> TRLMazeConfig:
    small = args.cells == 2  # only 48 distinct 2x2 mazes: 32 to train on, 16 held out
    return TRLMazeConfig(
        cells=args.cells,
        train_mazes=args.train_mazes or (32 if small else 512),
        eval_mazes=(16 if small else 64) if args.eval_mazes is None else args.eval_mazes,
        eval_samples=args.eval_samples, sft_steps=args.sft_steps, sft_batch=args.sft_batch,
        sft_learning_rate=args.sft_learning_rate, rl_steps=args.steps,
        prompts_per_step=args.prompts_per_step, num_generations=args.num_generations,
        learning_rate=args.learning_rate, seed=args.seed, **overrides,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if args.expect_world_size is not None and world_size != args.expect_world_size:
        raise SystemExit(
            f"expected {args.expect_world_size} processes, the launcher started {world_size} "
            "(note: `accelerate launch --cpu --num_processes N` starts one; use torchrun)"
        )
    config = _config(args, advantage=args.advantage)
    result = train_maze_with_trl(
        config,
        output_dir=args.output_dir,
        num_processes=world_size,
        trainer_class=RecordingCompanionGRPOTrainer if args.check_advantages else None,
    )
    if result.world_size != world_size:
        raise SystemExit(f"the trainer sees {result.world_size} processes, expected {world_size}")
    counts = {"groups": 0, "split": 0, "nonzero": 0, "split_nonzero": 0}
    if args.check_advantages:
        counts = check_gathered_advantages(
            result.trainer.loss_inputs, args.advantage, args.num_generations
        )
        if counts["groups"] == 0:
            raise SystemExit("no group reached the loss: nothing was checked")
    print(
        f"rank {result.process_index} of {result.world_size} finished "
        f"{len(result.reward_history)} steps; first step checked "
        f"{result.trainer.advantages_checked} rows; gathered groups checked {counts['groups']} "
        f"({counts['split']} split over processes, {counts['nonzero']} with a nonzero "
        f"advantage, {counts['split_nonzero']} both)",
        flush=True,
    )
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    if result.process_index == 0:
        print(json.dumps(result.to_dict()), flush=True)
    return 0


def compare(args: argparse.Namespace) -> int:
    config = _config(args)
    results = compare_with_trl(config, args.methods, args.seeds, progress=True)
    # a seconds-long slice of the first seed, for a reader (or a notebook) to re-run and compare
    results["slice"] = compare_with_trl(slice_config(config), args.methods, args.seeds[:1])
    path = Path(args.output_dir, COMPARISON_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="one training run")
    compare_parser = commands.add_parser("compare", help="estimators x seeds, paired")
    defaults = TRLMazeConfig()
    for sub in (run_parser, compare_parser):
        sub.add_argument("--cells", type=int, default=defaults.cells, help="maze cells per side")
        sub.add_argument("--train-mazes", type=int, default=None, help="default 512 (2x2: 32)")
        sub.add_argument(
            "--eval-mazes", type=int, default=None, help="held out; default 64 (2x2: 16)"
        )
        sub.add_argument("--eval-samples", type=int, default=defaults.eval_samples)
        sub.add_argument("--steps", type=int, default=defaults.rl_steps, help="TRL steps")
        sub.add_argument("--sft-steps", type=int, default=defaults.sft_steps, help="warm start")
        sub.add_argument("--sft-batch", type=int, default=defaults.sft_batch)
        sub.add_argument("--sft-learning-rate", type=float, default=defaults.sft_learning_rate)
        sub.add_argument("--prompts-per-step", type=int, default=defaults.prompts_per_step)
        sub.add_argument("--num-generations", type=int, default=defaults.num_generations)
        sub.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    run_parser.add_argument("--advantage", default="maxrl", help="companion estimator name")
    run_parser.add_argument("--seed", type=int, default=0)
    run_parser.add_argument("--output-dir", default=None, help="save the model and result.json")
    run_parser.add_argument("--expect-world-size", type=int, default=None)
    run_parser.add_argument("--check-advantages", action="store_true")
    compare_parser.add_argument("--methods", nargs="+", default=["maxrl", "grpo"])
    compare_parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    compare_parser.add_argument("--output-dir", required=True, help=f"writes {COMPARISON_FILE}")
    compare_parser.set_defaults(seed=0)
    args = parser.parse_args(argv)
    return run(args) if args.command == "run" else compare(args)


if __name__ == "__main__":
    sys.exit(main())
