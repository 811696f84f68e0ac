"""Exact enumeration against brute force over all M^N sequences, and its validation."""

import itertools
import math

import pytest
import torch

from companion.estimators import ADVANTAGES
from companion.exact import compositions, gradient_moments, pass_rate_and_gradient


def brute_force_moments(logits, success, n, advantage_fn):
    """Spec: enumerate every sequence of N outputs (M^N of them)."""
    probs = torch.softmax(logits.double(), 0)
    num_outputs = logits.numel()
    estimates, weights = [], []
    for sequence in itertools.product(range(num_outputs), repeat=n):
        rewards = success[list(sequence)].double()[None, :]
        advantages = advantage_fn(rewards)[0]
        estimate = torch.zeros(num_outputs, dtype=torch.float64)
        for a, z in zip(advantages, sequence, strict=True):
            score = -probs.clone()
            score[z] += 1
            estimate += a * score / n
        estimates.append(estimate)
        weights.append(math.prod(float(probs[z]) for z in sequence))
    estimates = torch.stack(estimates)
    weights = torch.tensor(weights, dtype=torch.float64)
    mean = weights @ estimates
    centred = estimates - mean
    return mean, (centred * weights[:, None]).T @ centred


@pytest.mark.parametrize(
    "name", ["reinforce", "rloo", "grpo", "maxrl", "maxrl_divide_by_k", "maxrl_control_variate"]
)
@pytest.mark.parametrize("num_outputs, n", [(2, 2), (3, 3), (3, 5), (4, 4)])
def test_matches_brute_force(name, num_outputs, n):
    generator = torch.Generator().manual_seed(num_outputs * 10 + n)
    logits = torch.randn(num_outputs, generator=generator, dtype=torch.float64)
    success = torch.zeros(num_outputs, dtype=torch.bool)
    success[1] = True
    mean, cov = gradient_moments(logits, success, n, ADVANTAGES[name])
    ref_mean, ref_cov = brute_force_moments(logits, success, n, ADVANTAGES[name])
    torch.testing.assert_close(mean, ref_mean, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(cov, ref_cov, atol=1e-12, rtol=1e-10)


def test_compositions_count_and_sum():
    counts = compositions(64, 3)
    assert counts.shape == (math.comb(66, 2), 3)
    assert bool((counts.sum(1) == 64).all()) and bool((counts >= 0).all())
    assert len({tuple(row) for row in counts.tolist()}) == counts.shape[0]


def test_pass_rate_gradient_matches_autograd():
    logits = torch.tensor([0.3, -1.0, 2.0, 0.1], dtype=torch.float64, requires_grad=True)
    success = torch.tensor([True, False, True, False])
    p, grad_p = pass_rate_and_gradient(logits, success)
    torch.softmax(logits, 0)[success].sum().backward()
    torch.testing.assert_close(grad_p, logits.grad)
    assert p == pytest.approx(float(torch.softmax(logits.detach(), 0)[success].sum()))


def test_covariance_is_symmetric_psd_and_fast_for_m3_n64():
    logits = torch.tensor([math.log(0.1), math.log(0.6), math.log(0.3)])
    success = torch.tensor([True, False, False])
    mean, cov = gradient_moments(logits, success, 64, ADVANTAGES["maxrl"])
    torch.testing.assert_close(cov, cov.T)
    assert float(torch.linalg.eigvalsh(cov).min()) > -1e-12
    assert torch.isfinite(mean).all()


def test_bad_input():
    success = torch.tensor([True, False])
    with pytest.raises(ValueError, match=r"\(M,\)"):
        gradient_moments(torch.zeros(1), torch.tensor([True]), 2, ADVANTAGES["reinforce"])
    with pytest.raises(ValueError, match="bool"):
        gradient_moments(torch.zeros(2), torch.tensor([1, 0]), 2, ADVANTAGES["reinforce"])
    with pytest.raises(ValueError, match="NaN"):
        gradient_moments(torch.tensor([0.0, float("nan")]), success, 2, ADVANTAGES["reinforce"])
    with pytest.raises(ValueError, match=">= 1"):
        gradient_moments(torch.zeros(2), success, 0, ADVANTAGES["reinforce"])
    with pytest.raises(ValueError, match="symmetrically"):
        gradient_moments(
            torch.zeros(2), success, 3, lambda r: r * torch.arange(r.shape[1], dtype=r.dtype)
        )
    with pytest.raises(ValueError, match="count vectors"):
        gradient_moments(
            torch.zeros(8), torch.tensor([True] + [False] * 7), 64, ADVANTAGES["reinforce"]
        )
    with pytest.raises(ValueError, match="NaN or infinite"):
        gradient_moments(torch.zeros(2), success, 2, lambda r: r / 0.0)


@pytest.mark.parametrize("num_outputs, n", [(2, 10**6), (2, 5000), (3, 3000), (8, 64), (10, 10**9)])
def test_size_guard_counts_memory_and_refuses_before_allocating(num_outputs, n):
    import time
    import tracemalloc

    logits = torch.zeros(num_outputs)
    success = torch.tensor([True] + [False] * (num_outputs - 1))
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ValueError, match="GB"):
        gradient_moments(logits, success, n, ADVANTAGES["reinforce"])
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 1.0 and peak < 1e6  # refused up front, nothing enumerated


def test_size_guard_boundary_is_the_table_size(monkeypatch):
    from companion import exact

    n = 64  # M = 2: (N + 1) count vectors times N + M values each
    monkeypatch.setattr(exact, "MAX_TABLE_VALUES", (n + 1) * (n + 2))
    logits = torch.tensor([0.0, 0.5])
    success = torch.tensor([True, False])
    mean, _ = gradient_moments(logits, success, n, ADVANTAGES["reinforce"])
    torch.testing.assert_close(mean, pass_rate_and_gradient(logits, success)[1])
    with pytest.raises(ValueError, match="table values"):
        gradient_moments(logits, success, n + 1, ADVANTAGES["reinforce"])
    monkeypatch.setattr(exact, "MAX_TABLE_VALUES", 10**9)
    monkeypatch.setattr(exact, "MAX_COMPOSITIONS", n + 1)
    gradient_moments(logits, success, n, ADVANTAGES["reinforce"])
    with pytest.raises(ValueError, match="count vectors"):
        gradient_moments(logits, torch.tensor([True, False]), n + 1, ADVANTAGES["rloo"])


def test_a_slightly_asymmetric_advantage_is_refused():
    from companion.exact import group_weight

    def tilted(rewards):  # asymmetric by 1e-9: beyond the 1e-10 tolerances
        return rewards + 1e-9 * torch.arange(rewards.shape[1], dtype=rewards.dtype)

    with pytest.raises(ValueError, match="symmetrically"):
        gradient_moments(torch.zeros(2), torch.tensor([True, False]), 3, tilted)
    with pytest.raises(ValueError, match="symmetrically"):
        group_weight(tilted, 0.5, 3)


def test_n_samples_is_named_in_the_message():
    with pytest.raises(ValueError, match=r"^n_samples must be >= 1, got 0$"):
        gradient_moments(torch.zeros(2), torch.tensor([True, False]), 0, ADVANTAGES["rloo"])


def test_relative_asymmetry_is_refused_too():
    from companion.exact import group_weight

    def stretched(rewards):  # asymmetric by 1e-7 relative, only where rewards are nonzero
        index = torch.arange(rewards.shape[1], dtype=rewards.dtype)
        return rewards * (1 + 1e-7 * index)

    with pytest.raises(ValueError, match="symmetrically"):
        gradient_moments(torch.zeros(2), torch.tensor([True, False]), 3, stretched)
    with pytest.raises(ValueError, match="symmetrically"):
        group_weight(stretched, 0.5, 3)


def test_policy_inputs_must_both_be_tensors():
    with pytest.raises(TypeError, match="torch tensors"):
        pass_rate_and_gradient(torch.zeros(2), [True, False])
    with pytest.raises(TypeError, match="torch tensors"):
        pass_rate_and_gradient([0.0, 0.0], torch.tensor([True, False]))


def test_advantage_fn_must_return_a_tensor():
    success = torch.tensor([True, False])
    with pytest.raises(ValueError, match="return a tensor shaped like rewards"):
        gradient_moments(torch.zeros(2), success, 2, lambda r: r.tolist())
