r"""Train the maze policy with MaxRL inside TRL, on one process or several.

One process::

    python -m companion.integrations.trl_maze --steps 20

Two CPU processes (gloo), each generating half of every batch::

    torchrun --nproc_per_node 2 -m companion.integrations.trl_maze --steps 2 --expect-world-size 2

Several GPUs (one process per GPU, NCCL)::

    accelerate launch --multi_gpu --num_processes 4 --num_machines 1 --mixed_precision no \
        --dynamo_backend no -m companion.integrations.trl_maze --steps 200 --expect-world-size 4

(``accelerate launch --cpu --num_processes 2`` starts ONE process without an error, hence
``--expect-world-size``: the run fails unless it really has that many processes.)

With ``--check-advantages`` every process records what reaches TRL's ``_compute_loss`` and
asserts that, group by group, the advantages equal ``companion.estimators`` applied to the
verifier's rewards of the same completions. Each process prints one line
``rank R of W finished ...`` and, on rank 0, a JSON summary.

Derived in: chapter 10.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import torch

from companion.integrations.trl import (
    CompanionGRPOTrainer,
    RecordLossInputs,
    TRLMazeConfig,
    recorded_groups,
    resolve_advantage,
    train_maze_with_trl,
)
from companion.maze.env import decode_prompt, verify


class RecordingCompanionGRPOTrainer(RecordLossInputs, CompanionGRPOTrainer):
    """:class:`CompanionGRPOTrainer` that also keeps every input of ``_compute_loss``."""


def check_recorded_advantages(
    loss_inputs: list, advantage: str, num_generations: int
) -> tuple[int, int]:
    r"""Assert that every recorded group's advantages equal the companion estimator applied to
    the verifier's rewards of its completions; return (groups checked, groups with a nonzero
    advantage).

    Derived in: chapter 10.
    """
    _, advantage_fn = resolve_advantage(advantage)
    checked = nonzero = 0
    for prompt, completions, applied in recorded_groups(loss_inputs):
        if len(completions) != num_generations:
            raise AssertionError(
                f"a group has {len(completions)} completions on this process, expected "
                f"{num_generations} (groups must not straddle processes)"
            )
        maze = decode_prompt(prompt)
        rewards = torch.tensor([[float(verify(maze, ids)) for ids in completions]])
        expected = advantage_fn(rewards)[0]
        if not torch.allclose(applied, expected, rtol=1e-6, atol=1e-6):
            raise AssertionError(
                f"advantages reaching the loss {applied.tolist()} differ from "
                f"{advantage}({rewards[0].tolist()}) = {expected.tolist()}"
            )
        checked += 1
        nonzero += int(bool((expected != 0).any()))
    return checked, nonzero


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="TRL optimizer steps")
    parser.add_argument("--cells", type=int, default=2, help="maze cells per side")
    parser.add_argument("--advantage", default="maxrl", help="companion estimator name")
    parser.add_argument("--sft-steps", type=int, default=60, help="supervised warm-start steps")
    parser.add_argument("--sft-batch", type=int, default=32)
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--eval-mazes", type=int, default=0, help="0: no pass-rate evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--expect-world-size", type=int, default=None)
    parser.add_argument("--check-advantages", action="store_true")
    args = parser.parse_args(argv)

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if args.expect_world_size is not None and world_size != args.expect_world_size:
        raise SystemExit(
            f"expected {args.expect_world_size} processes, the launcher started {world_size} "
            "(note: `accelerate launch --cpu --num_processes N` starts one; use torchrun)"
        )
    train_mazes = 48 if args.cells == 2 else 512
    config = TRLMazeConfig(
        cells=args.cells, train_mazes=train_mazes, eval_mazes=args.eval_mazes,
        held_out=args.cells != 2, sft_steps=args.sft_steps, sft_batch=args.sft_batch,
        rl_steps=args.steps,
        prompts_per_step=args.prompts_per_step, num_generations=args.num_generations,
        learning_rate=args.learning_rate, advantage=args.advantage, seed=args.seed,
    )  # fmt: skip
    trainer_class = RecordingCompanionGRPOTrainer if args.check_advantages else None
    result = train_maze_with_trl(config, num_processes=world_size, trainer_class=trainer_class)
    if result.world_size != world_size:
        raise SystemExit(f"the trainer sees {result.world_size} processes, expected {world_size}")
    checked = nonzero = 0
    if args.check_advantages:
        checked, nonzero = check_recorded_advantages(
            result.trainer.loss_inputs, args.advantage, args.num_generations
        )
        if checked == 0:
            raise SystemExit("no group reached the loss: nothing was checked")
    rank = result.process_index
    print(
        f"rank {rank} of {result.world_size} finished {len(result.reward_history)} steps, "
        f"checked {checked} groups ({nonzero} with a nonzero advantage)",
        flush=True,
    )
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    if rank == 0:
        summary = {
            key: (None if isinstance(value, float) and math.isnan(value) else value)
            for key, value in vars(result).items()
            if key != "trainer"
        }
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
