"""Let TRL 1.15 train on a CPU-only machine, for the version-matrix tests only.

TRL 1.15.0 computes per-token log-probabilities with a Triton kernel and has no other path
(``trl.trainer.utils._ChunkedLogProbFunction`` is None without the ``triton`` package), so its
``GRPOTrainer`` cannot take a step on a CPU; TRL 1.16 added a plain-torch path. The bridge's
hooks (reward gathering, advantages, slicing, the loss inputs) do not involve that kernel, so
the bridge's tests replace it by the same mathematics in plain torch when it is missing. With
TRL 1.16, or with Triton and a GPU, :func:`apply` changes nothing.

    python tests/trl_kernel_fallback.py ARGS   # the maze command line, with the fallback
"""

from __future__ import annotations

import sys

import torch


class TorchChunkedLogProb:
    """Plain-torch stand-in for ``trl.kernels.ChunkedLogProbFunction.apply`` (TRL 1.15)."""

    @staticmethod
    def apply(hidden, weight, bias, labels, temperature, chunk_size, softcap, logit_scale, outputs):
        logits = hidden @ weight.T  # (n, V)
        if bias is not None:
            logits = logits + bias
        logits = logits.float() * logit_scale
        if softcap is not None:
            logits = softcap * torch.tanh(logits / softcap)
        logprobs = torch.log_softmax(logits / temperature, dim=-1)  # (n, V)
        chosen = logprobs.gather(-1, labels[:, None]).squeeze(-1)  # (n,)
        entropy = -(logprobs.exp() * logprobs).sum(-1) if "entropy" in outputs else None
        for name in outputs:
            if name not in ("log_probs", "entropy"):
                raise NotImplementedError(f"fallback kernel: output {name!r}")
        return chosen, entropy, None, None, None


def apply() -> bool:
    """Install the fallback when TRL's kernel is missing; return whether it is in use."""
    import trl.trainer.utils as trl_utils

    if getattr(trl_utils, "_ChunkedLogProbFunction", True) is None:
        trl_utils._ChunkedLogProbFunction = TorchChunkedLogProb
    return getattr(trl_utils, "_ChunkedLogProbFunction", None) is TorchChunkedLogProb


if __name__ == "__main__":
    apply()
    from companion.integrations.trl_maze.__main__ import main

    sys.exit(main(sys.argv[1:]))
