r"""The maze task of chapter 9 through TRL, fully offline.

* :mod:`~companion.integrations.trl_maze.task`: tokenizer, tiny causal LM, mazes, dataset,
  verifier reward, supervised warm start, pass rates;
* :mod:`~companion.integrations.trl_maze.train`: one run (:func:`train_maze_with_trl`), a paired
  comparison of estimators over seeds (:func:`compare_with_trl`), provenance;
* ``python -m companion.integrations.trl_maze run|compare``: the command line, which also runs
  under ``torchrun`` and ``accelerate launch`` with several processes.

Needs the optional packages: ``pip install -e ".[scale]"``.

Derived in: chapter 10.
"""

from companion.integrations.trl_maze.task import (
    make_mazes,
    maze_dataset,
    maze_from_prompt_text,
    maze_pass_rates,
    maze_prompt_text,
    maze_reward,
    maze_tokenizer,
    sft_warm_start,
    tiny_causal_lm,
)
from companion.integrations.trl_maze.train import (
    TRLMazeConfig,
    TRLMazeResult,
    WarmStart,
    compare_with_trl,
    provenance,
    slice_config,
    train_maze_with_trl,
    warm_start,
)

__all__ = [
    "TRLMazeConfig",
    "TRLMazeResult",
    "WarmStart",
    "compare_with_trl",
    "make_mazes",
    "maze_dataset",
    "maze_from_prompt_text",
    "maze_pass_rates",
    "maze_prompt_text",
    "maze_reward",
    "maze_tokenizer",
    "provenance",
    "sft_warm_start",
    "slice_config",
    "tiny_causal_lm",
    "train_maze_with_trl",
    "warm_start",
]
