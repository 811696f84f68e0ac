r"""Training, probe and held-out mazes as tensors.

Two seed streams of Prim mazes: the evaluation stream gives the held-out mazes (the first
``eval_mazes`` distinct ones), the training stream the training pool (``train_pool`` distinct
mazes). The first ``max(eval_mazes, HELD_OUT_RESERVE)`` mazes of the evaluation stream are kept
out of the pool, so the pool does not depend on how many held-out mazes a run evaluates: a run
on 32 held-out mazes trains on exactly the mazes of a run on 256. The probe set is the first
``probe_mazes`` mazes of the pool (training mazes whose pass rate is tracked during RL).

Derived in: chapter 9.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from companion.maze.config import MazeConfig
from companion.maze.env import (
    DONE,
    PAD,
    Maze,
    bfs_path,
    draw_mazes,
    encode_prompt,
    max_answer_length,
)

TRAIN_STREAM, EVAL_STREAM = 1, 2
HELD_OUT_RESERVE = 512  # evaluation-stream mazes never trained on (3x3 cells and larger)


@dataclass
class MazeBatchData:
    r"""A set of M mazes as tensors.

    ============  ==============  ==================================================
    field         shape           meaning
    ============  ==============  ==================================================
    ``prompts``   ``(M, T0)``     long, prompt tokens
    ``open``      ``(M, S, S)``   bool, walkable squares
    ``start``     ``(M, 2)``      long, START square
    ``goal``      ``(M, 2)``      long, GOAL square
    ``answers``   ``(M, La)``     long, BFS moves + DONE, PAD after (SFT targets)
    ``mask``      ``(M, La)``     bool, True on the target tokens
    ============  ==============  ==================================================
    """

    mazes: list[Maze]
    prompts: torch.Tensor
    open: torch.Tensor
    start: torch.Tensor
    goal: torch.Tensor
    answers: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return len(self.mazes)

    def subset(self, count: int) -> MazeBatchData:
        """The first ``count`` mazes."""
        return MazeBatchData(
            self.mazes[:count],
            *(t[:count] for t in (self.prompts, self.open, self.start, self.goal)),
            self.answers[:count],
            self.mask[:count],
        )


_MAZE_CACHE: dict[tuple, list[Maze]] = {}


def held_out_reserve(cells: int, eval_mazes: int) -> int:
    """How many evaluation-stream mazes are kept out of training (2x2 cells: 48 problems in all,
    so only the held-out ones)."""
    return max(eval_mazes, HELD_OUT_RESERVE if cells >= 3 else 0)


def spanning_trees(cells: int) -> int:
    r"""Number of perfect mazes with ``cells x cells`` cells: the spanning trees of the grid
    graph, by Kirchhoff's theorem any cofactor :math:`\det L_{11}` of its Laplacian
    :math:`L = D - A`, computed exactly with fraction-free (Bareiss) elimination. The minor is
    positive definite, so no pivot is zero. 1, 4, 192, 100 352, ... for 1, 2, 3, 4 cells.

    Derived in: chapter 9.
    """
    n = cells * cells
    laplacian = [[0] * n for _ in range(n)]
    for r in range(cells):
        for c in range(cells):
            for nr, nc in ((r + 1, c), (r, c + 1)):
                if nr < cells and nc < cells:
                    i, j = r * cells + c, nr * cells + nc
                    laplacian[i][j] = laplacian[j][i] = -1
                    laplacian[i][i] += 1
                    laplacian[j][j] += 1
    minor = [row[1:] for row in laplacian[1:]]  # (n - 1, n - 1)
    size, previous = n - 1, 1
    for k in range(size - 1):
        for i in range(k + 1, size):
            for j in range(k + 1, size):
                minor[i][j] = (minor[i][j] * minor[k][k] - minor[i][k] * minor[k][j]) // previous
        previous = minor[k][k]
    return minor[-1][-1] if size else 1


def distinct_problems(cells: int) -> int:
    r"""Distinct (maze, START, GOAL) problems: perfect mazes times ordered pairs of distinct
    cells, :math:`\tau(c) \, c^2 (c^2 - 1)` (48 with 2x2 cells, 13 824 with 3x3)."""
    return spanning_trees(cells) * cells * cells * (cells * cells - 1)


def check_enough_problems(config: MazeConfig) -> None:
    """``ValueError`` at once when the held-out reserve and the training pool together need
    more distinct problems than ``config.cells`` allows (drawing would only fail after many
    draws)."""
    reserve = held_out_reserve(config.cells, config.eval_mazes)
    available = distinct_problems(config.cells)
    if reserve + config.train_pool > available:
        raise ValueError(
            f"MazeConfig.eval_mazes {config.eval_mazes} and MazeConfig.train_pool "
            f"{config.train_pool} need {reserve + config.train_pool} distinct mazes ({reserve} "
            f"held out, {config.train_pool} for training), but {config.cells}x{config.cells} "
            f"cells give only {available}; ask for fewer or use larger mazes"
        )


def evaluation_mazes(cells: int, count: int) -> list[Maze]:
    """The first ``count`` distinct mazes of the evaluation stream."""
    key = ("eval", cells, count)
    if key not in _MAZE_CACHE:
        rng = np.random.default_rng([EVAL_STREAM, cells])
        _MAZE_CACHE[key] = draw_mazes(cells, count, rng)
    return _MAZE_CACHE[key]


def training_mazes(cells: int, count: int, exclude: frozenset[str]) -> list[Maze]:
    """``count`` distinct mazes of the training stream, none in ``exclude``."""
    key = ("train", cells, count, hash(exclude))
    if key not in _MAZE_CACHE:
        rng = np.random.default_rng([TRAIN_STREAM, cells])
        _MAZE_CACHE[key] = draw_mazes(cells, count, rng, exclude=exclude)
    return _MAZE_CACHE[key]


def build_data(mazes: list[Maze], device: torch.device | str) -> MazeBatchData:
    """Tensors for ``mazes`` (all of one size)."""
    cells = mazes[0].cells
    if any(m.cells != cells for m in mazes):
        raise ValueError("build_data: all mazes must have the same size")
    answer_len = max_answer_length(cells)
    answers = torch.full((len(mazes), answer_len), PAD, dtype=torch.long)
    mask = torch.zeros((len(mazes), answer_len), dtype=torch.bool)
    for row, maze in enumerate(mazes):
        target = bfs_path(maze) + [DONE]
        answers[row, : len(target)] = torch.tensor(target)
        mask[row, : len(target)] = True
    used = int(mask.sum(1).max())
    return MazeBatchData(
        mazes=mazes,
        prompts=torch.tensor([encode_prompt(m) for m in mazes], dtype=torch.long).to(device),
        open=torch.from_numpy(np.stack([m.open for m in mazes])).to(device),
        start=torch.tensor([m.start for m in mazes], dtype=torch.long).to(device),
        goal=torch.tensor([m.goal for m in mazes], dtype=torch.long).to(device),
        answers=answers[:, :used].to(device),
        mask=mask[:, :used].to(device),
    )


def prepare_data(config: MazeConfig) -> tuple[MazeBatchData, MazeBatchData]:
    """(training pool, held-out mazes); raises if a held-out maze is in the pool."""
    check_enough_problems(config)
    reserve = evaluation_mazes(config.cells, held_out_reserve(config.cells, config.eval_mazes))
    excluded = frozenset(m.key() for m in reserve)
    held_out = reserve[: config.eval_mazes]
    pool = training_mazes(config.cells, config.train_pool, exclude=excluded)
    if excluded & {m.key() for m in pool}:
        raise RuntimeError("prepare_data: a held-out maze is in the training pool")
    return build_data(pool, config.device), build_data(held_out, config.device)


def batch_indices(seed: int, phase: int, step: int, batch: int, pool: int) -> np.ndarray:
    """Pool indices of one step's mazes: a pure function of (seed, phase, step), so a resumed
    run and every method see the same mazes at the same step."""
    return np.random.default_rng([seed, phase, step]).integers(pool, size=batch)


def stream_seed(*parts: int) -> int:
    """A 63-bit seed for ``torch.Generator.manual_seed`` from integer parts (seed, purpose,
    step, block, ...): independent streams that do not shift when another stream is used more."""
    low, high = (int(v) for v in np.random.SeedSequence(list(parts)).generate_state(2))
    return (low | high << 32) >> 1
