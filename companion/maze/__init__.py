"""The maze experiment of chapter 9: environment, transformer, sampler, training, reports.

* :mod:`companion.maze.env`: Prim's mazes, BFS paths, tokenizer, verifier.
* :mod:`companion.maze.model`: a small decoder-only transformer with a KV cache.
* :mod:`companion.maze.sampler`: batched P x N rollouts and token log-probabilities.
* :mod:`companion.maze.config`: ``MazeConfig``, validated, with the scales cpu / long / gpu.
* :mod:`companion.maze.data`: training, probe and held-out mazes as tensors.
* :mod:`companion.maze.train`: SFT, RL with REINFORCE/RLOO/GRPO/MaxRL, evaluation, resume.
* :mod:`companion.maze.experiment`: seeds x methods (x N), resumable, results with provenance.
* :mod:`companion.maze.report`: tables, paired bootstrap intervals, efficiency, N-sweep.
* :mod:`companion.maze.figures`: the chapter's figures.
* :mod:`companion.maze.provenance`: atomic JSON and checkpoints, safe loading, provenance.

Run ``python -m companion.maze --help``.
"""

from companion.maze.config import METHODS, MazeConfig, describe
from companion.maze.data import MazeBatchData, prepare_data
from companion.maze.env import Maze, bfs_path, is_perfect, prim_maze, verify, verify_batch
from companion.maze.experiment import run_experiment
from companion.maze.model import MazeTransformer, ModelConfig
from companion.maze.provenance import RunFileError, load_checkpoint
from companion.maze.report import (
    efficiency_gain,
    format_table,
    pass_at_k_curves,
    summary_rows,
)
from companion.maze.sampler import sample, token_logprobs
from companion.maze.train import evaluate, rl_step, train_rl, train_sft

__all__ = [
    "METHODS",
    "Maze",
    "MazeBatchData",
    "MazeConfig",
    "MazeTransformer",
    "ModelConfig",
    "RunFileError",
    "bfs_path",
    "describe",
    "efficiency_gain",
    "evaluate",
    "format_table",
    "is_perfect",
    "load_checkpoint",
    "pass_at_k_curves",
    "prepare_data",
    "prim_maze",
    "rl_step",
    "run_experiment",
    "sample",
    "summary_rows",
    "token_logprobs",
    "train_rl",
    "train_sft",
    "verify",
    "verify_batch",
]
