r"""The maze task of chapter 9 in TRL's terms, built offline: tokenizer, model, data, reward.

* :func:`maze_tokenizer`: a word-level tokenizer whose ids equal ``companion.maze.env.TOKEN_ID``;
* :func:`tiny_causal_lm`: a small Qwen2 or Llama causal LM from a config (random weights);
* :func:`make_mazes`, :func:`maze_dataset`: Prim mazes and a ``datasets.Dataset`` of prompts;
* :func:`maze_reward`: the chapter-9 verifier as a TRL reward function;
* :func:`sft_warm_start`, :func:`maze_pass_rates`: supervised warm start and evaluation.

Nothing is downloaded. Needs the optional packages: ``pip install -e ".[scale]"``.

Derived in: chapter 10.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from companion.integrations.trl import INSTALL_HINT
from companion.maze.env import (
    DONE,
    PAD,
    TOKEN_ID,
    VOCAB,
    VOCAB_SIZE,
    Maze,
    bfs_path,
    decode_prompt,
    draw_mazes,
    encode_prompt,
    max_answer_length,
    tokens_to_text,
    verify,
)

try:
    import datasets
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
except ImportError as error:  # pragma: no cover - exercised only without the optional packages
    raise ImportError(
        f"companion.integrations.trl_maze needs transformers and datasets: {INSTALL_HINT} "
        f"(missing: {error.name})"
    ) from error

__all__ = [
    "make_mazes",
    "maze_dataset",
    "maze_from_prompt_text",
    "maze_pass_rates",
    "maze_prompt_text",
    "maze_reward",
    "maze_tokenizer",
    "sft_warm_start",
    "tiny_causal_lm",
]


def maze_tokenizer() -> transformers.PreTrainedTokenizerFast:
    r"""A tokenizer over the maze vocabulary, built locally (no download).

    Word level over the whitespace-separated token names of ``companion.maze.env.VOCAB``, with
    ids equal to ``TOKEN_ID`` (so an id means the same in chapter 9 and here). ``PAD`` pads,
    ``DONE`` is the end-of-sequence token (generation stops there); no BOS is added. An
    unknown word raises instead of mapping to a placeholder.

    Derived in: chapter 10.
    """
    backend = Tokenizer(models.WordLevel(vocab=dict(TOKEN_ID), unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="PAD",
        eos_token="DONE",
        padding_side="left",
    )
    return tokenizer


def tiny_causal_lm(
    *,
    family: str = "qwen2",
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_positions: int = 512,
    seed: int = 0,
) -> transformers.PreTrainedModel:
    r"""A randomly initialised causal LM over the maze vocabulary, built from a config.

    ``family`` is ``"qwen2"`` or ``"llama"`` (RMSNorm, rotary positions, SwiGLU MLP). The
    vocabulary is ``companion.maze.env.VOCAB`` (13 tokens), ``PAD`` pads and ``DONE`` ends a
    sequence. ``intermediate_size`` defaults to ``round(8 * hidden / 3)``: a SwiGLU MLP has
    three matrices, so that matches the parameters of a 4x GELU MLP.

    Derived in: chapter 10.
    """
    if family not in ("qwen2", "llama"):
        raise ValueError(f"tiny_causal_lm: family must be 'qwen2' or 'llama', got {family!r}")
    if hidden_size % num_heads:
        raise ValueError(
            f"tiny_causal_lm: hidden_size {hidden_size} must be divisible by num_heads {num_heads}"
        )
    intermediate = round(8 * hidden_size / 3) if intermediate_size is None else intermediate_size
    config_class = transformers.Qwen2Config if family == "qwen2" else transformers.LlamaConfig
    config = config_class(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden_size,
        intermediate_size=intermediate,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=PAD,
        eos_token_id=DONE,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = PAD
    model.generation_config.eos_token_id = DONE
    model.generation_config.bos_token_id = None
    return model


def make_mazes(cells: int, count: int, seed: int, exclude: set[str] | None = None) -> list[Maze]:
    """``count`` distinct Prim mazes (chapter 9's generator) whose keys are not in ``exclude``.

    Derived in: chapter 10.
    """
    return draw_mazes(cells, count, np.random.default_rng(seed), exclude=exclude or frozenset())


def maze_prompt_text(maze: Maze) -> str:
    """The chapter-9 prompt as space-separated token names (what TRL tokenizes)."""
    return tokens_to_text(encode_prompt(maze))


def maze_from_prompt_text(text: str) -> Maze:
    """Inverse of :func:`maze_prompt_text`; raises ValueError on an unknown word."""
    words = text.split()
    unknown = [word for word in words if word not in TOKEN_ID]
    if unknown:
        raise ValueError(
            f"maze_from_prompt_text: unknown token {unknown[0]!r}; expected names from {VOCAB}"
        )
    return decode_prompt([TOKEN_ID[word] for word in words])


def maze_dataset(mazes: Sequence[Maze]) -> datasets.Dataset:
    """A ``datasets.Dataset`` with a ``"prompt"`` column (plain text, no chat template) and the
    BFS answer in ``"answer"`` (never shown to the policy; useful for SFT and inspection).

    Derived in: chapter 10.
    """
    if len(mazes) == 0:
        raise ValueError("maze_dataset: no mazes given")
    return datasets.Dataset.from_dict(
        {
            "prompt": [maze_prompt_text(maze) for maze in mazes],
            "answer": [tokens_to_text([*bfs_path(maze), DONE]) for maze in mazes],
        }
    )


def maze_reward(
    prompts: Sequence[str], completion_ids: Sequence[Sequence[int]], **_: object
) -> list[float]:
    r"""TRL reward function: the chapter-9 verifier, :math:`r = 1` iff the answer reaches GOAL.

    TRL calls it with the prompt texts, the completions (decoded text, which drops ``DONE``
    because it is the end-of-sequence token) and ``completion_ids`` (the generated ids up to
    and including the first ``DONE``); the verifier replays the ids, so ``DONE`` is seen.
    Returns one reward in {0.0, 1.0} per completion.

    Derived in: chapter 10 (verifier: chapter 9).
    """
    if len(prompts) != len(completion_ids):
        raise ValueError(
            f"maze_reward: {len(prompts)} prompts but {len(completion_ids)} completions"
        )
    cache: dict[str, Maze] = {}
    rewards = []
    for prompt, ids in zip(prompts, completion_ids, strict=True):
        if prompt not in cache:
            cache[prompt] = maze_from_prompt_text(prompt)
        rewards.append(float(verify(cache[prompt], [int(i) for i in ids])))
    return rewards


def sft_warm_start(
    model: transformers.PreTrainedModel,
    mazes: Sequence[Maze],
    *,
    steps: int,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    seed: int = 0,
) -> list[float]:
    r"""Supervised warm start on BFS answers: minimise :math:`-\log\pi(\text{BFS path}, DONE \mid
    \text{maze})` per answer token (prompt tokens and padding are masked out), AdamW.

    All prompts of one maze size have the same length, so only answers are padded (on the
    right). Returns the loss of each step. The model is left in eval mode.

    Derived in: chapter 10 (the same warm start as chapter 9, on the TRL-side model).
    """
    if steps < 0:
        raise ValueError(f"sft_warm_start: steps must be >= 0, got {steps}")
    device = next(model.parameters()).device
    prompts = [encode_prompt(maze) for maze in mazes]
    answers = [[*bfs_path(maze), DONE] for maze in mazes]
    if len({len(p) for p in prompts}) != 1:
        raise ValueError("sft_warm_start: all mazes must have the same size")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    losses: list[float] = []
    model.train()
    for _ in range(steps):
        picked = torch.randint(len(mazes), (batch_size,), generator=generator).tolist()
        width = max(len(answers[i]) for i in picked)
        input_ids, labels, attention = [], [], []
        for i in picked:
            pad = width - len(answers[i])
            input_ids.append(prompts[i] + answers[i] + [PAD] * pad)
            labels.append([-100] * len(prompts[i]) + answers[i] + [-100] * pad)
            attention.append([1] * (len(prompts[i]) + len(answers[i])) + [0] * pad)
        batch = {
            name: torch.tensor(value, device=device)
            for name, value in (
                ("input_ids", input_ids),
                ("labels", labels),
                ("attention_mask", attention),
            )
        }
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


@torch.no_grad()
def maze_pass_rates(
    model: transformers.PreTrainedModel,
    mazes: Sequence[Maze],
    *,
    num_samples: int,
    seed: int = 0,
    batch_mazes: int = 64,
) -> np.ndarray:
    r"""Per-maze pass rate :math:`\hat p_m = \frac1n\sum_{i=1}^n r_{m,i}` from ``num_samples``
    completions sampled at temperature 1 (no top-k/top-p, as in training) and the verifier.

    Returns a float array of shape ``(len(mazes),)``; its mean is the pass@1 estimate.

    Derived in: chapter 10.
    """
    if num_samples < 1:
        raise ValueError(f"maze_pass_rates: num_samples must be >= 1, got {num_samples}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    max_new = max_answer_length(mazes[0].cells)
    rates = []
    for begin in range(0, len(mazes), batch_mazes):
        chunk = mazes[begin : begin + batch_mazes]
        prompts = torch.tensor([encode_prompt(m) for m in chunk], device=device)
        inputs = prompts.repeat_interleave(num_samples, dim=0)
        output = model.generate(
            input_ids=inputs,
            attention_mask=torch.ones_like(inputs),
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_new_tokens=max_new,
            pad_token_id=PAD,
            eos_token_id=DONE,
        )
        answers = output[:, prompts.shape[1] :].view(len(chunk), num_samples, -1).tolist()
        for maze, samples in zip(chunk, answers, strict=True):
            rates.append(float(np.mean([verify(maze, answer) for answer in samples])))
    model.train(was_training)
    return np.asarray(rates)
