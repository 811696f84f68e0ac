r"""Batched sampling of P x N rollouts and the token log-probabilities used by the trainer.

=================  ==============  =====================================================
tensor             shape           meaning
=================  ==============  =====================================================
``prompts``        ``(P, T0)``     long, one prompt per maze (all mazes of a size have
                                   the same prompt length, so no padding is needed)
``tokens``         ``(P, N, L)``   long, generated answers, PAD after the first DONE
``mask``           ``(P, N, L)``   bool, True for generated tokens up to and with DONE
``logprobs``       ``(P, N, L)``   float, :math:`\log\pi(z_t \mid x, z_{<t})`
=================  ==============  =====================================================

Derived in: chapter 9.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from companion.maze.env import DONE, PAD
from companion.maze.model import MazeTransformer


@dataclass
class Rollouts:
    tokens: torch.Tensor  # (P, N, L) long
    mask: torch.Tensor  # (P, N, L) bool

    @property
    def num_generated(self) -> int:
        return int(self.mask.sum())


def _pick(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Next token ``(B,)`` from ``logits`` ``(B, V)``: argmax at temperature 0, else sampled."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = F.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


@torch.no_grad()
def sample(
    model: MazeTransformer,
    prompts: torch.Tensor,
    num_samples: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    autocast: bool = False,
) -> Rollouts:
    r"""Generate ``num_samples`` answers for each of the P prompts at once (P*N sequences).

    With ``use_cache`` the prompts are run once (prefill on P rows), the N answers of a prompt
    share its keys and values (:meth:`KVCache.share_prefix`), and each step feeds one token per
    sequence. Without it every step re-runs the
    whole sequence (the reference the benchmark compares against). A sequence stops at its
    first DONE; sampling stops when all have stopped or after ``max_new_tokens``.
    ``temperature=1`` samples from the policy (training rollouts); ``0`` is greedy.
    """
    if prompts.ndim != 2:
        raise ValueError(f"sample: prompts must be (P, T0), got {tuple(prompts.shape)}")
    if num_samples < 1 or max_new_tokens < 1:
        raise ValueError("sample: num_samples and max_new_tokens must be >= 1")
    if temperature < 0:
        raise ValueError(f"sample: temperature must be >= 0, got {temperature}")
    num_prompts = prompts.shape[0]
    batch = num_prompts * num_samples
    device = prompts.device
    was_training = model.training
    model.eval()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        if use_cache:
            cache = model.new_cache()
            logits = model(prompts, cache)[:, -1]  # (P, V)
            cache = cache.share_prefix(num_samples)  # the prompt's keys kept once, not N times
            logits = logits.repeat_interleave(num_samples, dim=0)  # (B, V)
        else:
            sequence = prompts.repeat_interleave(num_samples, dim=0)  # (B, T0)
            logits = model(sequence)[:, -1]
        generated = torch.full((batch, max_new_tokens), PAD, dtype=torch.long, device=device)
        mask = torch.zeros((batch, max_new_tokens), dtype=torch.bool, device=device)
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        for t in range(max_new_tokens):
            token = _pick(logits, temperature, generator)  # (B,)
            token = torch.where(finished, torch.full_like(token, PAD), token)
            generated[:, t] = token
            mask[:, t] = ~finished
            finished = finished | (token == DONE)
            if t == max_new_tokens - 1 or bool(finished.all()):
                break
            if use_cache:
                logits = model(token[:, None], cache)[:, -1]
            else:
                sequence = torch.cat([sequence, token[:, None]], dim=1)
                logits = model(sequence)[:, -1]
    model.train(was_training)
    length = max(int(mask.sum(dim=1).max()), 1)
    shape = (num_prompts, num_samples, length)
    return Rollouts(
        tokens=generated[:, :length].reshape(shape), mask=mask[:, :length].reshape(shape)
    )


def token_logprobs(
    model: MazeTransformer,
    prompts: torch.Tensor,
    answers: torch.Tensor,
    autocast: bool = False,
    use_cache: bool = True,
) -> torch.Tensor:
    r"""Log-probabilities ``(B, L)`` of ``answers`` ``(B, L)``, ``B = P * N``, after ``prompts``
    ``(P, T0)`` (answers ``N*p .. N*p + N - 1`` belong to prompt ``p``); differentiable.

    With ``use_cache`` each prompt runs once and its N answers attend to its keys and values,
    kept once (:meth:`KVCache.share_prefix`), so a step costs ``P*T0 + B*L`` token positions
    instead of ``B*(T0 + L)``. Without it, one teacher-forced pass over the full sequences (the
    reference; both give the same numbers up to rounding). Position ``T0 - 1 + t`` predicts
    answer token ``t``. Tokens after DONE (PAD) get a value too; mask them out.
    """
    if prompts.ndim != 2 or answers.ndim != 2 or answers.shape[0] % prompts.shape[0]:
        raise ValueError(
            f"token_logprobs: expected prompts (P, T0) and answers (P*N, L), got "
            f"{tuple(prompts.shape)} and {tuple(answers.shape)}"
        )
    num_samples = answers.shape[0] // prompts.shape[0]
    with torch.autocast(prompts.device.type, dtype=torch.bfloat16, enabled=autocast):
        if use_cache:
            cache = model.new_cache()
            first = model(prompts, cache)[:, -1:]  # (P, 1, V): predicts answer token 0
            first = first.repeat_interleave(num_samples, dim=0)  # (B, 1, V)
            if answers.shape[1] > 1:
                cache = cache.share_prefix(num_samples)
                rest = model(answers[:, :-1], cache)  # (B, L - 1, V)
                logits = torch.cat([first, rest], dim=1)  # (B, L, V)
            else:
                logits = first
        else:
            sequence = torch.cat([prompts.repeat_interleave(num_samples, dim=0), answers], 1)
            logits = model(sequence[:, :-1])[:, prompts.shape[1] - 1 :]  # (B, L, V)
    logp = F.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, answers[..., None]).squeeze(-1)  # (B, L)
