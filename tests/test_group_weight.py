"""group_weight: the finite-N factor c_N(p), against a loop spec, enumeration and closed forms."""

import itertools
import math

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.estimators import ADVANTAGES
from companion.exact import gradient_moments, group_weight, pass_rate_and_gradient

NAMES = ["reinforce", "rloo", "grpo", "dr_grpo", "maxrl", "maxrl_divide_by_k"]
NAMES += ["maxrl_control_variate"]


def group_weight_spec(advantage_fn, p: float, n: int) -> float:
    """Spec: E[(1/N) sum_i A_i (r_i - p)] / (p (1-p)) over all 2^N reward vectors.

    For a two-output policy (one correct) S_i = (r_i - p) d theta, so E[g] = c p(1-p).
    """
    total = 0.0
    for rewards in itertools.product([0.0, 1.0], repeat=n):
        k = sum(rewards)
        probability = p**k * (1 - p) ** (n - k)
        advantages = advantage_fn(torch.tensor([rewards], dtype=torch.float64))[0].tolist()
        pairs = zip(advantages, rewards, strict=True)
        total += probability * sum(a * (r - p) for a, r in pairs) / n
    return total / (p * (1 - p))


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    n=st.integers(2, 9),
    p=st.floats(0.01, 0.99),
)
def test_matches_loop_spec(name, n, p):
    expected = group_weight_spec(ADVANTAGES[name], p, n)
    assert group_weight(ADVANTAGES[name], p, n) == pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [2, 5, 12])
def test_matches_exact_enumeration(name, n):
    """E[g_hat] from gradient_moments equals c_N(p) grad p for a 4-output policy."""
    logits = torch.tensor([0.4, -1.2, 0.9, 0.1], dtype=torch.float64)
    success = torch.tensor([False, True, False, True])
    mean, _ = gradient_moments(logits, success, n, ADVANTAGES[name])
    p, grad_p = pass_rate_and_gradient(logits, success)
    torch.testing.assert_close(mean, group_weight(ADVANTAGES[name], p, n) * grad_p)


def closed_form(name: str, p, n: int):
    p = mpmath.mpf(p)
    return {
        "reinforce": mpmath.mpf(1),
        "rloo": mpmath.mpf(1),
        "dr_grpo": mpmath.mpf(n - 1) / n,
        "maxrl_divide_by_k": (1 - (1 - p) ** n) / p if p else mpmath.mpf(n),
        "maxrl_control_variate": (1 - (1 - p) ** n) / p if p else mpmath.mpf(n),
        "maxrl": (1 - (1 - p) ** (n - 1)) / p if p else mpmath.mpf(n - 1),
    }[name]


@pytest.mark.parametrize(
    "name, n",
    [(name, n) for name in NAMES if name != "grpo" for n in (2, 3, 64, 1000)]
    + [("maxrl", 4096), ("maxrl_divide_by_k", 4096), ("rloo", 4096)],
)
def test_closed_forms_stable_from_1e_12_to_1(name, n):
    pass_rates = [0.0, 1e-12, 1e-9, 1e-6, 1e-3, 0.1, 0.5, 0.999, 1 - 1e-9, 1.0]
    got = group_weight(ADVANTAGES[name], np.array(pass_rates), n)
    with mpmath.workdps(50):
        expected = [float(closed_form(name, p, n)) for p in pass_rates]
    np.testing.assert_allclose(got, expected, rtol=2e-12, atol=0)


def test_grpo_is_bounded_at_finite_n():
    """GRPO's finite-N weight: about 2.47 at N = 8, p = 1e-3 (not 1/sqrt(p(1-p)) = 31.6), and
    (N-1)/sqrt(N) at both ends (a lone success or failure: A = (N-1)/sqrt(N) - (-1/sqrt(N)))."""
    assert group_weight(ADVANTAGES["grpo"], 1e-3, 8) == pytest.approx(2.4714, abs=1e-4)
    for n in (4, 8, 64):
        # std with Bessel's correction of one success in N is 1/sqrt(N); A_1 - A_0 = N / sqrt(N)
        # divided by (1 + eps sqrt(N)); the limit at p -> 0 is (N-1) times that difference / N.
        limit = (n - 1) / math.sqrt(n) / (1 + 1e-6 * math.sqrt(n))
        for p in (0.0, 1.0):
            assert group_weight(ADVANTAGES["grpo"], p, n) == pytest.approx(limit, rel=1e-9)


def test_returns_the_input_kind():
    fn = ADVANTAGES["maxrl"]
    assert isinstance(group_weight(fn, 0.25, 4), float)
    array = group_weight(fn, np.array([[0.1, 0.2]]), 4)
    assert isinstance(array, np.ndarray) and array.shape == (1, 2) and array.dtype == np.float64
    tensor = group_weight(fn, torch.tensor([0.1, 0.2], dtype=torch.float32), 4)
    assert tensor.dtype == torch.float32 and tensor.shape == (2,)
    np.testing.assert_allclose(tensor.numpy(), array[0], rtol=1e-6)
    assert group_weight(fn, np.zeros((0,)), 4).shape == (0,)


def test_large_inputs_are_chunked(monkeypatch):
    """Inputs are evaluated in chunks of pass rates (1e5 pass rates at N = 4096 would be a
    3.3 GB table at once); chunked results equal the one-chunk result and the closed form."""
    import companion.exact as exact

    pass_rates = torch.linspace(0, 1, 5001, dtype=torch.float64)
    whole = group_weight(ADVANTAGES["maxrl"], pass_rates, 64)
    monkeypatch.setattr(exact, "_GROUP_WEIGHT_CHUNK", 64 * 7)  # 7 pass rates per chunk
    chunked = group_weight(ADVANTAGES["maxrl"], pass_rates, 64)
    torch.testing.assert_close(chunked, whole, rtol=1e-14, atol=0)  # matmul blocking
    safe = pass_rates.clamp_min(1e-300)
    expected = torch.where(pass_rates > 0, -torch.expm1(63 * torch.log1p(-pass_rates)) / safe, 63)
    torch.testing.assert_close(chunked, expected, rtol=1e-12, atol=0)


def test_bad_input():
    fn = ADVANTAGES["maxrl"]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        group_weight(fn, 1.5, 4)
    with pytest.raises(ValueError, match="NaN"):
        group_weight(fn, float("nan"), 4)
    with pytest.raises(ValueError, match=">= 1"):
        group_weight(fn, 0.5, 0)
    with pytest.raises(TypeError, match="positive integer"):
        group_weight(fn, 0.5, 2.5)
    with pytest.raises(ValueError, match="N = 2"):
        group_weight(ADVANTAGES["rloo"], 0.5, 1)
    with pytest.raises(TypeError, match="callable"):
        group_weight("maxrl", 0.5, 4)
    with pytest.raises(ValueError, match="symmetrically"):
        group_weight(lambda r: r * torch.arange(r.shape[1], dtype=r.dtype), 0.5, 3)
    with pytest.raises(ValueError, match="too large"):
        group_weight(fn, 0.5, 10**6)
