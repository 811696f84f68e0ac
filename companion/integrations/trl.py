r"""MaxRL (or any companion estimator) inside Hugging Face TRL's ``GRPOTrainer``.

TRL computes GRPO's advantages inline, inside the private method
``GRPOTrainer._generate_and_score_completions``: from the rewards gathered over all processes
by ``_calculate_rewards`` it forms, per group of ``G = num_generations`` completions of one
prompt, :math:`A_i = (r_i - \bar r)/(\operatorname{std}(r) + 10^{-4})` (or
:math:`r_i - \bar r` with ``scale_rewards="none"``), then keeps this process's slice. No option
expresses MaxRL's Algorithm 1,

.. math:: A_i = \frac{r_i - \bar r}{\bar r}\quad(\bar r > 0), \qquad A_i = 0 \quad(\bar r = 0).

:class:`CompanionGRPOTrainer` keeps the gathered rewards that ``_calculate_rewards`` returns,
lets TRL run unchanged, then replaces this process's slice of ``"advantages"`` with the
companion estimator applied to ``rewards.view(-1, G)``. This happens before TRL shuffles and
splits the generation batch, so gradient accumulation, ``steps_per_generation`` and
``num_iterations`` see the new values.

The override relies on private methods, so it is checked three ways: the TRL version
(:mod:`companion.integrations.trl_version`); on the first generation batch, that the gathered
rows are grouped prompt by prompt; on the first optimizer step, that the advantages reaching the
loss are the companion's for those rows (else :class:`AdvantageCheckError`).

====================  ==========  =========================================================
tensor                shape       meaning
====================  ==========  =========================================================
``rewards_per_func``  ``(B, F)``  gathered; ``rewards = rewards_per_func @ reward_weights``
``advantages``        ``(B,)``    ``estimator(rewards.view(-1, G)).view(-1)``, then sliced
====================  ==========  =========================================================

Task-free: :mod:`companion.integrations.trl_maze` puts chapter 9's maze through it.

Derived in: chapter 10.
"""

from __future__ import annotations

from functools import partial

import torch

from companion.estimators import ADVANTAGES, AdvantageFn, maxrl
from companion.integrations.trl_records import (
    RecordLossInputs,
    completion_token_logprobs,
    gathered_groups,
    recorded_groups,
    row_keys,
)
from companion.integrations.trl_version import (
    ALLOW_UNTESTED_ENV,
    INSTALL_HINT,
    SUPPORTED_TRL,
    TESTED_TRL_VERSIONS,
    UnsupportedTRLVersionError,
    UntestedTRLVersionWarning,
    check_trl_internals,
    check_trl_version,
)

try:
    import trl
    from accelerate.utils import gather_object
    from trl import GRPOConfig, GRPOTrainer
except ImportError as error:  # pragma: no cover - exercised only without the optional packages
    raise ImportError(
        f"companion.integrations.trl needs the optional packages trl{SUPPORTED_TRL}, "
        f"transformers, accelerate and datasets; install them with {INSTALL_HINT} "
        f"(missing: {error.name})"
    ) from error

__all__ = [
    "ALLOW_UNTESTED_ENV",
    "INSTALL_HINT",
    "SUPPORTED_TRL",
    "TESTED_TRL_VERSIONS",
    "AdvantageCheckError",
    "CompanionGRPOTrainer",
    "RecordLossInputs",
    "UnsupportedTRLVersionError",
    "UntestedTRLVersionWarning",
    "check_trl_version",
    "completion_token_logprobs",
    "gathered_groups",
    "group_advantages",
    "grpo_config",
    "recorded_groups",
    "resolve_advantage",
]


class AdvantageCheckError(RuntimeError):
    """What reaches TRL's loss is not what the bridge computed: TRL's internals changed."""


def resolve_advantage(advantage: str | AdvantageFn) -> tuple[str, AdvantageFn]:
    r"""Name and function of a companion advantage estimator.

    ``"maxrl"`` is Algorithm 1, :math:`A_i = (r_i - \bar r)/\bar r` (0 when every sample fails);
    the other names are the keys of :data:`companion.estimators.ADVANTAGES`. A callable mapping
    rewards ``(P, N)`` to advantages ``(P, N)`` is used as is.

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
    r"""Advantages of a flat batch laid out as TRL lays it out: completions ``g*G .. g*G+G-1``
    answer prompt ``g``, so :math:`A = \mathrm{advantage\_fn}(r.\mathrm{view}(-1, G))
    .\mathrm{view}(-1)`.

    ===========  ========  ===================================
    argument     shape     meaning
    ===========  ========  ===================================
    ``rewards``  ``(B,)``  B = P * G rewards, float
    returns      ``(B,)``  advantages in the same order
    ===========  ========  ===================================

    For groups in any order and of any size, use :func:`companion.estimators.grouped`.

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
        or rewards.numel() % num_generations
    ):
        raise ValueError(
            f"group_advantages: {rewards.numel()} rewards do not split into groups of "
            f"num_generations = {num_generations!r} (a positive int)"
        )
    advantages = advantage_fn(rewards.view(-1, num_generations))
    if advantages.shape != (rewards.numel() // num_generations, num_generations):
        raise ValueError(
            f"group_advantages: the estimator returned shape {tuple(advantages.shape)}, "
            "expected (P, G)"
        )
    return advantages.reshape(-1)


class CompanionGRPOTrainer(GRPOTrainer):
    r"""TRL's ``GRPOTrainer`` with the advantages of a companion estimator (MaxRL by default).

    Everything else is TRL's: generation, the reward functions and their weights (the
    estimator sees :math:`r = \sum_f w_f r_f`, as TRL's GRPO does), the cross-process gather,
    the clipped surrogate, ``loss_type`` (default ``"dapo"``: the companion's
    ``aggregation="token_mean"``), the optimizer and the logging (the logged ``reward_std``
    stays TRL's; the logged ``advantages`` are the companion's).

    Parameters
    ----------
    *args, **kwargs
        Passed to ``trl.GRPOTrainer``. ``args.scale_rewards`` no longer affects the advantages.
    advantage : str or callable, default "maxrl"
        See :func:`resolve_advantage`.
    allow_untested_trl : bool, optional
        Run with a TRL outside :data:`SUPPORTED_TRL` (with a warning). Default: the environment
        variable :data:`ALLOW_UNTESTED_ENV`.
    check_first_step : bool, default True
        Check on the first generation batch that the gathered rows are grouped prompt by prompt,
        and on the first optimizer step that the advantages reaching ``_compute_loss`` equal the
        companion's for the same rows; ``advantages_checked`` counts the rows compared.

    Attributes
    ----------
    reward_history : list of float
        Mean reward of each training generation batch (over all processes).
    last_rewards, last_advantages : Tensor, shape (P, G), of the latest generation batch (CPU)

    Raises
    ------
    UnsupportedTRLVersionError
        TRL outside :data:`SUPPORTED_TRL`, without opt-in.
    AdvantageCheckError
        The first-step checks failed: TRL changed where or how it uses the advantages.
    ValueError
        Unknown estimator, ``multi_objective_aggregation`` other than ``"sum_then_normalize"``,
        a completion no reward function scored, or rewards the estimator rejects (MaxRL needs
        binary rewards).

    Derived in: chapter 10.
    """

    def __init__(
        self,
        *args,
        advantage: str | AdvantageFn = "maxrl",
        allow_untested_trl: bool | None = None,
        check_first_step: bool = True,
        **kwargs,
    ) -> None:
        check_trl_version(allow_untested=allow_untested_trl)
        check_trl_internals(GRPOTrainer)
        self.advantage_name, self.advantage_fn = resolve_advantage(advantage)
        self.reward_history: list[float] = []
        self.last_rewards: torch.Tensor | None = None
        self.last_advantages: torch.Tensor | None = None
        self.advantages_checked = 0
        self._check_pending = check_first_step
        self._expected: dict[tuple, list[float]] | None = None
        self._gathered_rewards_per_func: torch.Tensor | None = None
        super().__init__(*args, **kwargs)
        if self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(
                "CompanionGRPOTrainer: multi_objective_aggregation must be 'sum_then_normalize' "
                "(the companion estimator sees the weighted sum of the rewards), got "
                f"{self.multi_objective_aggregation!r}"
            )

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(
            inputs, prompts, completions, completion_ids_list
        )
        self._gathered_rewards_per_func = rewards_per_func  # (B, F), gathered over processes
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        if self._expected is not None and self.model.training:
            raise AdvantageCheckError(
                f"CompanionGRPOTrainer: {sum(map(len, self._expected.values()))} rows of the "
                f"first generation batch never reached the loss (trl=={trl.__version__})"
            )
        self._gathered_rewards_per_func = None
        output = super()._generate_and_score_completions(inputs)
        rewards_per_func = self._gathered_rewards_per_func
        if rewards_per_func is None or "advantages" not in output:
            raise AdvantageCheckError(
                "CompanionGRPOTrainer: TRL did not call _calculate_rewards or returned no "
                f"'advantages' (trl=={trl.__version__}); supported: trl{SUPPORTED_TRL}"
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
            raise AdvantageCheckError(
                f"CompanionGRPOTrainer: this process's {local.shape[0]} rows at {start} lie "
                f"outside the gathered batch of {advantages.numel()} (trl=={trl.__version__})"
            )
        output["advantages"] = advantages[start : start + local.shape[0]].to(local)
        if self._check_pending and mode == "train":
            self._check_layout(output, start, advantages.numel(), num_generations)
            keys = row_keys(output)
            self._expected = {}
            for key, value in zip(keys, output["advantages"].tolist(), strict=True):
                self._expected.setdefault(key, []).append(value)
            self._check_pending = False

        logged = self._logs["advantages"]  # TRL appended its own values for the whole batch
        for _ in range(min(advantages.numel(), len(logged))):
            logged.pop()
        logged.extend(advantages.tolist())
        if mode == "train":
            self.reward_history.append(float(rewards.mean()))
        self.last_rewards = rewards.view(-1, num_generations).detach().cpu()
        self.last_advantages = advantages.view(-1, num_generations).detach().cpu()
        return output

    def _check_layout(self, output, start: int, total: int, num_generations: int) -> None:
        """Rows ``g*G .. g*G+G-1`` of the gathered batch answer one prompt, and this process
        holds rows ``start ..``: checked on the prompts of every process."""
        local = [prompt for prompt, _ in row_keys(output)]
        prompts = gather_object(local)  # (B,) over processes, in process order
        if len(prompts) != total or prompts[start : start + len(local)] != local:
            raise AdvantageCheckError(
                f"CompanionGRPOTrainer: the processes hold {len(prompts)} rows for {total} "
                f"rewards, or this process's rows are not rows {start}.. of the gathered batch "
                f"(trl=={trl.__version__})"
            )
        for group in range(total // num_generations):
            rows = prompts[group * num_generations : (group + 1) * num_generations]
            if len(set(rows)) != 1:
                raise AdvantageCheckError(
                    f"CompanionGRPOTrainer: group {group} of the gathered batch mixes prompts; "
                    f"the bridge assumes completions g*G .. g*G+G-1 answer prompt g "
                    f"(trl=={trl.__version__})"
                )

    def _compute_loss(self, model, inputs):
        if self._expected is not None:
            self._check_loss_inputs(inputs)
        return super()._compute_loss(model, inputs)

    def _check_loss_inputs(self, inputs) -> None:
        """Each row reaching the loss carries the advantage computed for its (prompt,
        completion) on the first generation batch."""
        applied = inputs["advantages"]
        if applied.ndim != 1:
            raise AdvantageCheckError(
                f"CompanionGRPOTrainer: advantages of shape {tuple(applied.shape)} reach the "
                "loss, expected one per completion"
            )
        for key, value in zip(row_keys(inputs), applied.tolist(), strict=True):
            candidates = self._expected.get(key, [])
            match = next((c for c in candidates if abs(c - value) <= 1e-6 * (1 + abs(c))), None)
            if match is None:
                raise AdvantageCheckError(
                    f"CompanionGRPOTrainer: an advantage reaching TRL's loss is {value:.6g}, "
                    f"but the companion's {self.advantage_name} gave {candidates} for this "
                    f"completion (trl=={trl.__version__}); TRL changes the advantages after "
                    "scoring, and the bridge does not support this version"
                )
            candidates.remove(match)
            self.advantages_checked += 1
        if not any(self._expected.values()):
            self._expected = None  # every row of the first generation batch was checked


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
    (``per_device_train_batch_size = prompts_per_step * num_generations / num_processes``;
    a group may straddle two processes). Changed from TRL's defaults: ``bf16=False`` and
    ``gradient_checkpointing=False`` (TRL turns both on), ``learning_rate`` (TRL: 1e-6),
    ``logging_steps=1``, ``save_strategy="no"``, ``report_to="none"``, ``disable_tqdm=True``,
    a constant learning rate, and ``use_cpu=True`` when CUDA is absent (without it, several CPU
    processes under ``torchrun`` each train alone). Kept: ``beta=0``, ``num_iterations=1``,
    ``loss_type="dapo"``, ``temperature=1``, ``top_k=0``.

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
