"""The maze experiment of chapter 9: environment, transformer, sampler, trainer.

* :mod:`companion.maze.env`: Prim's mazes, BFS paths, tokenizer, verifier.
* :mod:`companion.maze.model`: a small decoder-only transformer with a KV cache.
* :mod:`companion.maze.sampler`: batched P x N rollouts and token log-probabilities.
* :mod:`companion.maze.train`: ``MazeConfig`` (CPU/GPU scales), SFT, RL with
  REINFORCE/RLOO/GRPO/MaxRL, held-out pass@k, resumable run folders.

Run ``python -m companion.maze --help``.
"""

from companion.maze.env import Maze, bfs_path, is_perfect, prim_maze, verify, verify_batch
from companion.maze.model import MazeTransformer, ModelConfig
from companion.maze.sampler import sample, token_logprobs
from companion.maze.train import MazeConfig, efficiency_gain, evaluate, run_experiment

__all__ = [
    "Maze",
    "MazeConfig",
    "MazeTransformer",
    "ModelConfig",
    "bfs_path",
    "efficiency_gain",
    "evaluate",
    "is_perfect",
    "prim_maze",
    "run_experiment",
    "sample",
    "token_logprobs",
    "verify",
    "verify_batch",
]
