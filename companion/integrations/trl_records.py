r"""What reaches a TRL trainer's loss: record it, regroup it by prompt, recompute log-probs.

A claim about the advantages a trainer applies is checked where they are applied: inside
``_compute_loss``, after TRL's gather, slicing, shuffling and splitting. These helpers need only
torch (and ``torch.distributed`` to gather several processes' records); the trainer itself is in
:mod:`companion.integrations.trl`.

Each record is the ``inputs`` dict of one ``_compute_loss`` call:

=====================  ===========  ================================================
key                    shape        meaning
=====================  ===========  ================================================
``prompt_ids``         ``(B, T0)``  left-padded prompts, ``prompt_mask`` alike
``completion_ids``     ``(B, T)``   right-padded completions, ``completion_mask``
``advantages``         ``(B,)``     the advantage applied to each completion
=====================  ===========  ================================================

Derived in: chapter 10.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "RecordLossInputs",
    "completion_token_logprobs",
    "gathered_groups",
    "recorded_groups",
    "row_keys",
]

Row = tuple[tuple[int, ...], tuple[int, ...]]  # (prompt ids, completion ids), padding removed


def row_keys(batch: dict[str, torch.Tensor]) -> list[Row]:
    """``(prompt, completion)`` of every row of a TRL batch, as token-id tuples without padding
    (cut by ``prompt_mask`` and ``completion_mask``).

    Derived in: chapter 10.
    """
    prompts = [
        tuple(ids[mask.bool()].tolist())
        for ids, mask in zip(batch["prompt_ids"], batch["prompt_mask"], strict=True)
    ]
    completions = [
        tuple(ids[mask.bool()].tolist())
        for ids, mask in zip(batch["completion_ids"], batch["completion_mask"], strict=True)
    ]
    return list(zip(prompts, completions, strict=True))


class RecordLossInputs:
    r"""Mixin that keeps what reaches ``_compute_loss``: put it first in the bases, e.g.
    ``class Recorded(RecordLossInputs, CompanionGRPOTrainer)``.

    Each call appends CPU copies of the tensors of its ``inputs`` to ``self.loss_inputs`` (rows
    in TRL's shuffled order). With :func:`recorded_groups` or :func:`gathered_groups` this
    checks the advantages TRL actually applies.

    Derived in: chapter 10.
    """

    loss_inputs: list[dict[str, torch.Tensor]]

    def _compute_loss(self, model, inputs):
        if not hasattr(self, "loss_inputs"):
            self.loss_inputs = []
        self.loss_inputs.append(
            {
                key: value.detach().cpu().clone()
                for key, value in inputs.items()
                if isinstance(value, torch.Tensor)
            }
        )
        return super()._compute_loss(model, inputs)


def completion_token_logprobs(
    model: torch.nn.Module, inputs: dict[str, torch.Tensor]
) -> torch.Tensor:
    r"""Log-probabilities :math:`\log\pi(z_t \mid x, z_{<t})` of the completion tokens of a
    recorded TRL batch, recomputed with ``model`` (differentiable).

    Returns shape ``(B, T)``, one value per completion position (masked positions included).
    With these, ``companion.estimators.policy_gradient_loss`` reproduces the gradient of TRL's
    loss.

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
    loss_inputs: Sequence[dict[str, torch.Tensor]],
) -> list[tuple[list[int], list[list[int]], torch.Tensor]]:
    r"""Regroup one process's recorded loss inputs by prompt:
    ``[(prompt, completions, advantages), ...]``.

    Rows of one record with the same prompt form one group (TRL shuffles rows, so the order
    inside a group is arbitrary but the same for ``completions`` and ``advantages``). Prompts
    must be distinct within one optimizer step. A group split over processes appears here with
    this process's rows only; :func:`gathered_groups` joins them.

    Derived in: chapter 10.
    """
    groups: list[tuple[list[int], list[list[int]], torch.Tensor]] = []
    for record in loss_inputs:
        by_prompt: dict[tuple[int, ...], list[int]] = {}
        keys = row_keys(record)
        for row, (prompt, _) in enumerate(keys):
            by_prompt.setdefault(prompt, []).append(row)
        for prompt, rows in by_prompt.items():
            completions = [list(keys[row][1]) for row in rows]
            groups.append((list(prompt), completions, record["advantages"][rows].float()))
    return groups


def gathered_groups(
    loss_inputs: Sequence[dict[str, torch.Tensor]],
) -> list[tuple[list[int], list[list[int]], torch.Tensor, list[int]]]:
    r"""Like :func:`recorded_groups`, over the records of every process:
    ``[(prompt, completions, advantages, ranks), ...]``, ``ranks[i]`` the process that applied
    row ``i``.

    Records are matched by their index (the ``k``-th ``_compute_loss`` call of every process),
    so each process must make the same number of calls (one per optimizer step with TRL's
    defaults). Without ``torch.distributed`` this is :func:`recorded_groups` on rank 0.
    A group whose ranks differ straddled two processes. Collective: every process must call it.

    Derived in: chapter 10.
    """
    rows = [
        (step, prompt, completion, value, 0)
        for step, record in enumerate(loss_inputs)
        for (prompt, completion), value in zip(
            row_keys(record), record["advantages"].float().tolist(), strict=True
        )
    ]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank = torch.distributed.get_rank()
        everyone: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(everyone, [(*r[:4], rank) for r in rows])
        rows = [row for part in everyone for row in part]
    by_group: dict[tuple, list] = {}
    for step, prompt, completion, value, rank in rows:
        by_group.setdefault((step, prompt), []).append((completion, value, rank))
    return [
        (
            list(prompt),
            [list(completion) for completion, _, _ in members],
            torch.tensor([value for _, value, _ in members]),
            [rank for _, _, rank in members],
        )
        for (_, prompt), members in by_group.items()
    ]
