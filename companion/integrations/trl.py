r"""MaxRL inside Hugging Face TRL's ``GRPOTrainer``, and the maze task of chapter 9 through TRL.

TRL computes GRPO's advantages inline, inside the private method
``GRPOTrainer._generate_and_score_completions``: from the rewards gathered over all processes
by ``_calculate_rewards`` it forms, per group of ``G = num_generations`` completions of one
prompt,

.. math:: A_i = \frac{r_i - \bar r}{\operatorname{std}(r) + 10^{-4}}
          \quad(\texttt{scale\_rewards="group"}), \qquad
          A_i = r_i - \bar r \quad(\texttt{scale\_rewards="none"}),

with Bessel's correction in the standard deviation, then keeps this process's slice. No option
expresses MaxRL's Algorithm 1,

.. math:: A_i = \frac{r_i - \bar r}{\bar r}\quad(\bar r > 0), \qquad A_i = 0 \quad(\bar r = 0),

whose expectation is :math:`\nabla J^{(G-1)}_{\mathrm{MaxRL}}`. :class:`CompanionGRPOTrainer`
keeps the gathered rewards that ``_calculate_rewards`` returns, lets TRL run unchanged, then
replaces this process's slice of ``"advantages"`` with ``companion.estimators.maxrl(rewards.view
(-1, G), "algorithm1")`` (or any estimator of ``companion.estimators.ADVANTAGES``). This
happens before TRL shuffles and splits the generation batch, so gradient accumulation,
``steps_per_generation`` and ``num_iterations`` see the new values. It relies on private
methods, so the module is pinned to one TRL version (:data:`SUPPORTED_TRL_VERSION`).

Shapes (B = completions in one generation batch over all processes, G completions per prompt):

=====================  ==========  ===============================================
tensor                 shape       meaning
=====================  ==========  ===============================================
``rewards_per_func``   ``(B, F)``  one column per reward function, gathered
``rewards``            ``(B,)``    weighted sum over the reward functions
``rewards.view(-1,G)`` ``(B/G,G)`` the companion's ``(P, N)`` layout
``advantages``         ``(B,)``    flattened back; each process keeps its slice
=====================  ==========  ===============================================

The offline maze helpers build everything locally (no download): a word-level tokenizer whose
ids equal ``companion.maze.env.TOKEN_ID``, a tiny Qwen2 or Llama causal LM from a config, a
``datasets.Dataset`` of maze prompts, and the chapter-9 verifier as a TRL reward function.

Derived in: chapter 10.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial

import numpy as np
import torch

from companion.estimators import ADVANTAGES, AdvantageFn, maxrl
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
    prompt_length,
    tokens_to_text,
    verify,
)

SUPPORTED_TRL_VERSION = "1.16.0"
INSTALL_HINT = 'pip install -e ".[scale]"'

try:
    import datasets
    import transformers
    import trl
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from trl import GRPOConfig, GRPOTrainer
except ImportError as error:  # pragma: no cover - exercised only without the optional packages
    raise ImportError(
        f"companion.integrations.trl needs the optional packages trl=={SUPPORTED_TRL_VERSION}, "
        f"transformers, accelerate and datasets; install them with {INSTALL_HINT} "
        f"(missing: {error.name})"
    ) from error

__all__ = [
    "INSTALL_HINT",
    "SUPPORTED_TRL_VERSION",
    "CompanionGRPOTrainer",
    "RecordLossInputs",
    "TRLMazeConfig",
    "TRLMazeResult",
    "UnsupportedTRLVersionError",
    "check_trl_version",
    "completion_token_logprobs",
    "grpo_config",
    "group_advantages",
    "make_mazes",
    "maze_dataset",
    "maze_from_prompt_text",
    "maze_pass_rates",
    "maze_prompt_text",
    "maze_reward",
    "maze_tokenizer",
    "recorded_groups",
    "resolve_advantage",
    "sft_warm_start",
    "tiny_causal_lm",
    "train_maze_with_trl",
]


# --------------------------------------------------------------------------------------------
# version pin and estimator choice
# --------------------------------------------------------------------------------------------
class UnsupportedTRLVersionError(RuntimeError):
    """The installed TRL is not the version whose private methods this module was checked on."""


def check_trl_version(version: str | None = None) -> str:
    """Return the installed TRL version, or raise if it is not :data:`SUPPORTED_TRL_VERSION`.

    The extension point overrides TRL's private ``_calculate_rewards`` and
    ``_generate_and_score_completions`` and reads private attributes (``reward_weights``,
    ``num_generations``, ``_logs``), which change between releases without notice.

    Derived in: chapter 10.
    """
    found = trl.__version__ if version is None else version
    if found != SUPPORTED_TRL_VERSION:
        raise UnsupportedTRLVersionError(
            f"companion.integrations.trl supports trl=={SUPPORTED_TRL_VERSION} only (it overrides "
            f"private methods of GRPOTrainer), found trl=={found}; install the supported version "
            f"with {INSTALL_HINT}"
        )
    return found


def resolve_advantage(advantage: str | AdvantageFn) -> tuple[str, AdvantageFn]:
    r"""Name and function of a companion advantage estimator.

    ``"maxrl"`` is Algorithm 1, :math:`A_i = (r_i - \bar r)/\bar r` (0 when every sample fails);
    the other names are the keys of :data:`companion.estimators.ADVANTAGES` (``"reinforce"``,
    ``"rloo"``, ``"grpo"``, ``"dr_grpo"``, ``"maxrl_divide_by_k"``,
    ``"maxrl_control_variate"``). A callable mapping rewards ``(P, N)`` to advantages
    ``(P, N)`` is used as is.

    Derived in: chapter 10.
    """
    if callable(advantage):
        return getattr(advantage, "__name__", type(advantage).__name__), advantage
    if advantage == "maxrl":
        return "maxrl", partial(maxrl, variant="algorithm1")
    if isinstance(advantage, str) and advantage in ADVANTAGES:
        return advantage, ADVANTAGES[advantage]
    raise ValueError(
        f"unknown advantage estimator {advantage!r}; expected a callable or one of "
        f"{sorted(ADVANTAGES)}"
    )


def group_advantages(
    rewards: torch.Tensor, num_generations: int, advantage_fn: AdvantageFn
) -> torch.Tensor:
    r"""Advantages of a flat batch of rewards laid out as TRL lays them out.

    TRL orders a generation batch prompt by prompt: completions ``g*G .. g*G + G - 1`` belong to
    prompt ``g``. So ``rewards.view(-1, G)`` is the companion's ``(P, N)`` layout, and

    .. math:: A = \mathrm{advantage\_fn}(r.\mathrm{view}(-1, G)).\mathrm{view}(-1).

    ===========  ===========  ===================================
    argument     shape        meaning
    ===========  ===========  ===================================
    ``rewards``  ``(B,)``     B = P * G rewards, float
    returns      ``(B,)``     advantages in the same order
    ===========  ===========  ===================================

    Derived in: chapter 10.
    """
    if not isinstance(rewards, torch.Tensor) or rewards.ndim != 1:
        raise ValueError(
            f"group_advantages: rewards must be a 1-D tensor (B,), got "
            f"{getattr(rewards, 'shape', type(rewards).__name__)}"
        )
    if (
        isinstance(num_generations, bool)
        or not isinstance(num_generations, int)
        or num_generations < 1
    ):
        raise ValueError(
            f"group_advantages: num_generations must be a positive int, got {num_generations!r}"
        )
    if rewards.numel() % num_generations:
        raise ValueError(
            f"group_advantages: {rewards.numel()} rewards do not split into groups of "
            f"num_generations = {num_generations}"
        )
    advantages = advantage_fn(rewards.view(-1, num_generations))
    if advantages.shape != (rewards.numel() // num_generations, num_generations):
        raise ValueError(
            f"group_advantages: the estimator returned shape "
            f"{tuple(advantages.shape)}, expected (P, G)"
        )
    return advantages.reshape(-1)


# --------------------------------------------------------------------------------------------
# the trainer
# --------------------------------------------------------------------------------------------
class CompanionGRPOTrainer(GRPOTrainer):
    r"""TRL's ``GRPOTrainer`` with the advantages of a companion estimator (MaxRL by default).

    .. math:: A_i = \frac{r_i - \bar r}{\bar r} \ (K \ge 1), \quad 0 \ (K = 0)
              \qquad\text{(``advantage="maxrl"``, Algorithm 1)}

    Everything else is TRL's: generation, the reward functions and their weights, the
    cross-process gather, the clipped surrogate, ``loss_type`` (its default ``"dapo"`` divides
    the summed token losses by the number of completion tokens in the global batch: the
    companion's ``aggregation="token_mean"``), the optimizer and the logging (the logged
    ``reward_std`` is still the plain standard deviation of the rewards; the logged
    ``advantages`` are the companion's).

    Parameters
    ----------
    *args, **kwargs
        Passed to ``trl.GRPOTrainer`` (``model``, ``reward_funcs``, ``args``, ``train_dataset``,
        ``processing_class``, ...). ``args.scale_rewards`` no longer affects the advantages.
    advantage : str or callable, default "maxrl"
        See :func:`resolve_advantage`.

    Attributes
    ----------
    reward_history : list of float
        Mean reward of each training generation batch (over all processes).
    last_rewards, last_advantages : Tensor, shape (P, G)
        The gathered rewards and the advantages of the latest generation batch (CPU).

    Raises
    ------
    UnsupportedTRLVersionError
        TRL is not version :data:`SUPPORTED_TRL_VERSION`.
    ValueError
        Unknown estimator, ``multi_objective_aggregation`` other than ``"sum_then_normalize"``,
        a completion that no reward function scored, or rewards the estimator rejects (MaxRL
        needs binary rewards in {0, 1}).

    Derived in: chapter 10.
    """

    def __init__(self, *args, advantage: str | AdvantageFn = "maxrl", **kwargs) -> None:
        check_trl_version()
        self.advantage_name, self.advantage_fn = resolve_advantage(advantage)
        self.reward_history: list[float] = []
        self.last_rewards: torch.Tensor | None = None
        self.last_advantages: torch.Tensor | None = None
        self._gathered_rewards_per_func: torch.Tensor | None = None
        super().__init__(*args, **kwargs)
        if self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(
                f"CompanionGRPOTrainer: multi_objective_aggregation must be 'sum_then_normalize' "
                f"(the companion estimator sees the weighted sum of the rewards), got "
                f"{self.multi_objective_aggregation!r}"
            )

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(
            inputs, prompts, completions, completion_ids_list
        )
        self._gathered_rewards_per_func = rewards_per_func  # (B, F), gathered over processes
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        self._gathered_rewards_per_func = None
        output = super()._generate_and_score_completions(inputs)
        rewards_per_func = self._gathered_rewards_per_func
        if rewards_per_func is None:
            raise RuntimeError(
                "CompanionGRPOTrainer: TRL did not call _calculate_rewards while scoring "
                f"completions; this module supports trl=={SUPPORTED_TRL_VERSION} only"
            )
        unscorable = torch.isnan(rewards_per_func).all(dim=1)
        if bool(unscorable.any()):
            raise ValueError(
                f"CompanionGRPOTrainer: {int(unscorable.sum())} completion(s) got no reward from "
                "any reward function (None); the companion estimators need a reward for every "
                "completion"
            )
        weights = self.reward_weights.to(rewards_per_func.device)
        rewards = (rewards_per_func * weights[None, :]).nansum(dim=1)  # (B,)
        mode = "train" if self.model.training else "eval"
        num_generations = self.num_generations if mode == "train" else self.num_generations_eval
        advantages = group_advantages(rewards, num_generations, self.advantage_fn)  # (B,)

        local = output["advantages"]  # (B_local,), this process's slice of TRL's advantages
        start = self.accelerator.process_index * local.shape[0]
        if start + local.shape[0] > advantages.numel():
            raise RuntimeError(
                "CompanionGRPOTrainer: this process's slice lies outside the "
                "gathered batch; unexpected TRL batch layout"
            )
        output["advantages"] = advantages[start : start + local.shape[0]].to(local)

        logged = self._logs["advantages"]  # TRL appended its own values for the whole batch
        for _ in range(min(advantages.numel(), len(logged))):
            logged.pop()
        logged.extend(advantages.tolist())
        if mode == "train":
            self.reward_history.append(float(rewards.mean()))
        self.last_rewards = rewards.view(-1, num_generations).detach().cpu()
        self.last_advantages = advantages.view(-1, num_generations).detach().cpu()
        return output


class RecordLossInputs:
    r"""Mixin that keeps what reaches ``_compute_loss``: put it first in the bases, e.g.
    ``class Recorded(RecordLossInputs, CompanionGRPOTrainer)``.

    Each call appends the tensors of its ``inputs`` (``prompt_ids``, ``completion_ids``,
    ``completion_mask``, ``advantages``, ...; CPU copies, rows in TRL's shuffled order) to
    ``self.loss_inputs``. With
    :func:`recorded_groups` this checks the advantages TRL actually applies, after its
    gather, slicing, shuffling and splitting.

    Derived in: chapter 10.
    """

    loss_inputs: list[dict[str, torch.Tensor]]

    def _compute_loss(self, model, inputs):
        if not hasattr(self, "loss_inputs"):
            self.loss_inputs = []
        self.loss_inputs.append(
            {
                name: value.detach().cpu()
                for name, value in inputs.items()
                if isinstance(value, torch.Tensor)
            }
        )
        return super()._compute_loss(model, inputs)


def completion_token_logprobs(
    model: torch.nn.Module, inputs: dict[str, torch.Tensor]
) -> torch.Tensor:
    r"""Log-probabilities :math:`\log\pi(z_t \mid x, z_{<t})` of the completion tokens of a
    recorded TRL batch, recomputed with ``model`` (differentiable).

    ===================  ==========  ==============================================
    tensor               shape       meaning
    ===================  ==========  ==============================================
    ``prompt_ids``       ``(B, T0)``  left-padded prompts, ``prompt_mask`` alike
    ``completion_ids``   ``(B, T)``   right-padded completions, ``completion_mask``
    returns              ``(B, T)``   one value per completion position
    ===================  ==========  ==============================================

    With these, ``companion.estimators.policy_gradient_loss`` reproduces the gradient of TRL's
    loss (chapter 10 compares the aggregations).

    Derived in: chapter 10.
    """
    device = next(model.parameters()).device
    prompt_ids, completion_ids = inputs["prompt_ids"], inputs["completion_ids"]
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1).to(device)
    attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1).to(device)
    logits = model(input_ids=input_ids, attention_mask=attention).logits
    logits = logits[:, prompt_ids.shape[1] - 1 : -1].float()  # position t predicts token t + 1
    logprobs = torch.log_softmax(logits, dim=-1)
    return logprobs.gather(-1, completion_ids.to(device)[..., None]).squeeze(-1)


def recorded_groups(
    loss_inputs: Sequence[dict[str, torch.Tensor]], pad_id: int = PAD
) -> list[tuple[list[int], list[list[int]], torch.Tensor]]:
    r"""Regroup recorded loss inputs by prompt: ``[(prompt, completions, advantages), ...]``.

    Rows of one optimizer step with the same prompt form one group (TRL shuffles rows, so the
    order inside a group is arbitrary but the same for ``completions`` and ``advantages``).
    Completions are cut by their mask; prompts lose their left padding. Prompts must be
    distinct within one step.

    Derived in: chapter 10.
    """
    groups: list[tuple[list[int], list[list[int]], torch.Tensor]] = []
    for record in loss_inputs:
        by_prompt: dict[tuple[int, ...], list[int]] = {}
        for row, prompt in enumerate(record["prompt_ids"].tolist()):
            key = tuple(token for token in prompt if token != pad_id)
            by_prompt.setdefault(key, []).append(row)
        for key, rows in by_prompt.items():
            completions = [
                record["completion_ids"][row][record["completion_mask"][row].bool()].tolist()
                for row in rows
            ]
            groups.append((list(key), completions, record["advantages"][rows].float()))
    return groups


def grpo_config(
    output_dir: str,
    *,
    max_steps: int,
    prompts_per_step: int = 4,
    num_generations: int = 8,
    num_processes: int = 1,
    max_completion_length: int = 32,
    learning_rate: float = 1e-3,
    seed: int = 0,
    **overrides,
) -> GRPOConfig:
    r"""A ``GRPOConfig`` that runs on CPU: full precision, no checkpointing, no reporting.

    ``GRPOConfig`` counts completions, not prompts: one optimizer step sees
    ``prompts_per_step * num_generations`` completions, split over ``num_processes``
    (``per_device_train_batch_size = prompts_per_step * num_generations / num_processes``).
    Changed from TRL's defaults: ``bf16=False`` and ``gradient_checkpointing=False`` (TRL turns
    both on), ``learning_rate`` (TRL: 1e-6, far too small for a model trained from scratch),
    ``logging_steps=1``, ``save_strategy="no"``, ``report_to="none"``, ``disable_tqdm=True``,
    a constant learning rate, and ``use_cpu=True`` when CUDA is absent (without it, several
    CPU processes under ``torchrun`` each train alone: accelerate only sets up a gloo process
    group for CPU runs it was told are CPU runs).
    Kept: ``beta=0`` (no KL term), ``num_iterations=1`` (on-policy, the clip is inactive),
    ``loss_type="dapo"`` (token mean over the batch), ``temperature=1``, ``top_k=0``.

    Derived in: chapter 10.
    """
    completions = prompts_per_step * num_generations
    if num_generations < 2:
        raise ValueError(f"grpo_config: GRPO needs num_generations >= 2, got {num_generations}")
    if completions % num_processes:
        raise ValueError(
            f"grpo_config: {completions} completions per step do not split over "
            f"{num_processes} processes"
        )
    settings = dict(
        output_dir=output_dir,
        max_steps=max_steps,
        num_generations=num_generations,
        per_device_train_batch_size=completions // num_processes,
        max_completion_length=max_completion_length,
        learning_rate=learning_rate,
        seed=seed,
        bf16=False,
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        beta=0.0,
        temperature=1.0,
        top_k=0,
        lr_scheduler_type="constant",
        warmup_steps=0,
        use_cpu=not torch.cuda.is_available(),
    )
    settings.update(overrides)
    return GRPOConfig(**settings)


# --------------------------------------------------------------------------------------------
# offline maze helpers
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# one end-to-end run: SFT warm start, pass rate, TRL training, pass rate
# --------------------------------------------------------------------------------------------
@dataclass
class TRLMazeConfig:
    """Everything one maze-through-TRL run needs (CPU-sized defaults)."""

    cells: int = 3
    train_mazes: int = 512
    eval_mazes: int = 64
    eval_samples: int = 8
    held_out: bool = True
    sft_steps: int = 60
    sft_batch: int = 64
    sft_learning_rate: float = 3e-3
    rl_steps: int = 5
    prompts_per_step: int = 4
    num_generations: int = 8
    learning_rate: float = 1e-3
    advantage: str = "maxrl"
    family: str = "qwen2"
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    seed: int = 0


@dataclass
class TRLMazeResult:
    """What a run measured. Pass rates are ``nan`` when ``eval_mazes == 0``."""

    config: dict
    trl_version: str
    world_size: int
    process_index: int
    pass_rate_before: float
    pass_rate_after: float
    reward_history: list[float] = field(default_factory=list)
    loss_history: list[float] = field(default_factory=list)
    parameter_change: float = 0.0
    seconds: float = 0.0
    trainer: object = field(default=None, repr=False)


def train_maze_with_trl(
    config: TRLMazeConfig,
    output_dir: str | None = None,
    num_processes: int = 1,
    quiet: bool = True,
    trainer_class: type | None = None,
) -> TRLMazeResult:
    r"""Warm-start a tiny LM on BFS answers, then train it with TRL and a companion estimator.

    Steps: build the tokenizer and the model locally; ``config.sft_steps`` of supervised warm
    start; measure the held-out pass rate; run ``config.rl_steps`` optimizer steps of
    :class:`CompanionGRPOTrainer` (``config.prompts_per_step`` mazes times
    ``config.num_generations`` completions each, reward :func:`maze_reward`); measure again.
    ``parameter_change`` is :math:`\lVert\theta_{\text{after}} - \theta_{\text{before RL}}\rVert_2`.
    Under ``torchrun``/``accelerate launch`` pass ``num_processes`` = the world size.
    ``trainer_class`` defaults to :class:`CompanionGRPOTrainer` (a subclass of it, e.g. with
    :class:`RecordLossInputs`, may be given); the trainer is returned in ``result.trainer``.

    Derived in: chapter 10.
    """
    check_trl_version()
    started = time.perf_counter()
    train = make_mazes(config.cells, config.train_mazes, seed=config.seed)
    if config.eval_mazes == 0:
        eval_set: list[Maze] = []
    elif config.held_out:
        eval_set = make_mazes(
            config.cells,
            config.eval_mazes,
            seed=config.seed + 10_000,
            exclude={m.key() for m in train},
        )
    else:
        eval_set = train[: config.eval_mazes]
    tokenizer = maze_tokenizer()
    model = tiny_causal_lm(
        family=config.family,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        max_positions=prompt_length(config.cells) + max_answer_length(config.cells) + 8,
        seed=config.seed,
    )
    sft_warm_start(
        model,
        train,
        steps=config.sft_steps,
        batch_size=config.sft_batch,
        learning_rate=config.sft_learning_rate,
        seed=config.seed,
    )
    before = (
        float(
            maze_pass_rates(
                model, eval_set, num_samples=config.eval_samples, seed=config.seed
            ).mean()
        )
        if eval_set
        else math.nan
    )
    initial = [p.detach().clone() for p in model.parameters()]
    with tempfile.TemporaryDirectory() as scratch:
        args = grpo_config(
            output_dir or scratch,
            max_steps=config.rl_steps,
            prompts_per_step=config.prompts_per_step,
            num_generations=config.num_generations,
            num_processes=num_processes,
            max_completion_length=max_answer_length(config.cells),
            learning_rate=config.learning_rate,
            seed=config.seed,
        )
        trainer_class = CompanionGRPOTrainer if trainer_class is None else trainer_class
        trainer = trainer_class(
            model=model,
            reward_funcs=maze_reward,
            args=args,
            train_dataset=maze_dataset(train),
            processing_class=tokenizer,
            advantage=config.advantage,
        )
        if quiet:  # no per-step dictionaries on stdout; the history stays in trainer.state
            trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
        trainer.train()
    model = trainer.model
    change = math.sqrt(
        sum(
            float((p.detach().cpu() - q.cpu()).pow(2).sum())
            for p, q in zip(model.parameters(), initial, strict=True)
        )
    )
    after = (
        float(
            maze_pass_rates(
                model, eval_set, num_samples=config.eval_samples, seed=config.seed + 1
            ).mean()
        )
        if eval_set
        else math.nan
    )
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return TRLMazeResult(
        config=asdict(config),
        trl_version=trl.__version__,
        world_size=trainer.accelerator.num_processes,
        process_index=trainer.accelerator.process_index,
        pass_rate_before=before,
        pass_rate_after=after,
        reward_history=list(trainer.reward_history),
        loss_history=[float(x) for x in losses],
        parameter_change=change,
        seconds=time.perf_counter() - started,
        trainer=trainer,
    )
