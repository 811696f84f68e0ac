"""group_weight: argument names, the size limit, the symmetry check's rows, dtype and autograd."""

import pytest
import torch

from companion.estimators import ADVANTAGES
from companion.exact import group_weight


@pytest.mark.parametrize("n_samples, error", [(0, ValueError), (2.5, TypeError), ("4", TypeError)])
def test_n_samples_is_named(n_samples, error):
    with pytest.raises(error, match=r"\bn_samples\b"):
        group_weight(ADVANTAGES["rloo"], 0.5, n_samples)


def test_size_limit_is_65536_samples():
    """N = 65536 passes the size check (the next check, on advantage_fn, answers); 65537 does
    not. Nothing is allocated in either case."""
    with pytest.raises(TypeError, match="callable"):
        group_weight(None, 0.5, 1 << 16)
    with pytest.raises(ValueError, match="too large"):
        group_weight(None, 0.5, (1 << 16) + 1)


def _biased_when(total: float):
    """Symmetric except in groups with exactly ``total`` successes, where sample 0 gets +1."""

    def fn(rewards: torch.Tensor) -> torch.Tensor:
        advantages = rewards.clone()
        advantages[:, 0] += (rewards.sum(1) == total).double()
        return advantages

    return fn


@pytest.mark.parametrize("n", [4, 64, 100])
def test_asymmetry_in_the_all_fail_or_all_pass_group_is_refused(n):
    """Row 0 of the failing table is the all-0 group, row N-1 of the passing table the all-1
    group: the symmetry check must look at both ends."""
    for total in (0.0, float(n)):
        with pytest.raises(ValueError, match="symmetrically"):
            group_weight(_biased_when(total), 0.5, n)


@pytest.mark.parametrize("n", [3, 64, 65, 300])
def test_symmetry_check_reverses_at_most_64_rows_including_both_ends(n):
    calls = []

    def recording(rewards: torch.Tensor) -> torch.Tensor:
        calls.append(rewards.clone())
        return rewards.clone()

    group_weight(recording, 0.5, n)
    rows = min(n, 64)
    # per first reward: the full table (one block at these N), the checked rows reversed, and as is
    assert [tuple(c.shape) for c in calls] == [(n, n), (rows, n), (rows, n)] * 2
    for table, reversed_group in ((calls[0], calls[1]), (calls[3], calls[4])):
        reversed_rows = reversed_group.flip(1)
        assert torch.equal(reversed_rows[0], table[0])
        assert torch.equal(reversed_rows[-1], table[-1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_tensor_input_is_computed_in_float64_then_rounded(dtype):
    """A half- or single-precision p gives the float64 value rounded once to p's dtype."""
    p = torch.tensor([0.5, 0.3, 0.01, 0.97], dtype=dtype)
    got = group_weight(ADVANTAGES["grpo"], p, 1000)
    expected = group_weight(ADVANTAGES["grpo"], p.double(), 1000).to(dtype)
    assert got.dtype == dtype
    assert torch.equal(got, expected)


def test_result_is_a_constant_for_autograd():
    """The weight is returned detached: it carries no graph back to p, and p gets no grad."""
    p = torch.tensor([0.2, 0.7], dtype=torch.float64, requires_grad=True)
    got = group_weight(ADVANTAGES["maxrl"], p, 8)
    assert not got.requires_grad and got.grad_fn is None
    assert p.grad is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_input_gives_a_cuda_result():
    p = torch.tensor([0.2, 0.7], device="cuda")
    got = group_weight(ADVANTAGES["maxrl"], p, 8)
    assert got.device == p.device and got.dtype == p.dtype
    expected = group_weight(ADVANTAGES["maxrl"], p.cpu(), 8)
    torch.testing.assert_close(got.cpu(), expected)
