"""Objectives and weights: loop specs, mpmath references, backends and bad input."""

import math

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from companion.objectives import fail_at_k, j_maxrl, j_ml, j_rl, pass_at_k, weight

mpmath.mp.dps = 60

probabilities = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
open_probabilities = st.floats(min_value=1e-12, max_value=1.0 - 1e-12)


def spec_j_maxrl(p: float, T: int) -> float:
    """Loop spec: -sum_{k=1}^T (1-p)^k / k."""
    return -sum((1.0 - p) ** k / k for k in range(1, T + 1))


def mp_j_maxrl(p: float, T: float) -> mpmath.mpf:
    """High-precision reference; the tail uses the Lerch transcendent for large T."""
    p = mpmath.mpf(p)
    q = 1 - p
    if T == math.inf:
        return mpmath.log(p)
    if T <= 3000:
        return -mpmath.fsum(q**k / k for k in range(1, T + 1))
    return mpmath.log(p) + q ** (T + 1) * mpmath.lerchphi(q, 1, T + 1)


@given(probabilities, st.integers(1, 60))
def test_pass_and_fail_at_k_match_loop_spec(p, k):
    fail = 1.0
    for _ in range(k):
        fail *= 1.0 - p
    assert fail_at_k(p, k) == pytest.approx(fail, rel=1e-12, abs=1e-300)
    assert pass_at_k(p, k) == pytest.approx(1.0 - fail, rel=1e-9, abs=1e-15)


@given(probabilities, st.integers(1, 200))
def test_j_maxrl_matches_loop_spec(p, T):
    assert j_maxrl(p, T) == pytest.approx(spec_j_maxrl(p, T), rel=1e-12, abs=1e-13)


# The Lerch-transcendent reference is too slow for p = 1e-12 with T = 1e9; T = 1e6 covers it.
CASES = [
    (p, T)
    for T in [1, 7, 4096, 4097, 10**5, 10**6, 10**9, math.inf]
    for p in [1e-12, 1e-7, 1e-3, 0.1, 0.5, 0.9, 1 - 1e-9, 1.0]
    if not (T == 10**9 and p < 1e-10)
]


@pytest.mark.parametrize("p, T", CASES)
def test_j_maxrl_against_mpmath(p, T):
    reference = float(mp_j_maxrl(p, T))
    assert j_maxrl(p, T) == pytest.approx(reference, rel=1e-11, abs=1e-15)


@pytest.mark.parametrize("T", [1, 16, 10**6, math.inf])
def test_weight_maxrl_against_mpmath(T):
    for p in [1e-12, 1e-6, 0.01, 0.3, 0.999, 1.0]:
        q = 1 - mpmath.mpf(p)
        reference = 1 / mpmath.mpf(p) if T == math.inf else (1 - q**T) / mpmath.mpf(p)
        assert weight("maxrl", p, T) == pytest.approx(float(reference), rel=1e-12)


def test_j_maxrl_endpoints():
    # T = 1 is RL up to the constant -1; p = 0 gives minus the harmonic number; p = 1 gives 0.
    assert j_maxrl(0.37, 1) == pytest.approx(j_rl(0.37) - 1.0, abs=1e-15)
    assert j_maxrl(0.0, 4) == pytest.approx(-(1 + 1 / 2 + 1 / 3 + 1 / 4))
    assert j_maxrl(1.0, 10**6) == 0.0
    assert j_maxrl(0.0, 10**6) == pytest.approx(-float(mpmath.harmonic(10**6)), rel=1e-12)
    assert j_maxrl(0.25, math.inf) == pytest.approx(math.log(0.25))


@given(open_probabilities, st.integers(1, 50))
def test_weight_is_derivative_of_j_maxrl(p, T):
    # w(p) = dJ^(T)/dp, checked against the derivative of the loop spec by complex-free
    # central differences in mpmath.
    def j(x):
        return -mpmath.fsum((1 - x) ** k / k for k in range(1, T + 1))

    derivative = mpmath.diff(j, mpmath.mpf(p))
    assert weight("maxrl", p, T) == pytest.approx(float(derivative), rel=1e-9)


@given(open_probabilities)
def test_weight_ordering_between_rl_and_ml(p):
    # 1 = w_RL <= w_MaxRL(T) <= w_ML = 1/p, increasing in T.
    previous = weight("rl", p)
    for T in [1, 2, 8, 64]:
        current = weight("maxrl", p, T)
        assert current >= previous * (1 - 1e-12)
        previous = current
    assert previous <= weight("ml", p) * (1 + 1e-12)
    assert weight("grpo", p) == pytest.approx(1 / math.sqrt(p * (1 - p)), rel=1e-12)


def test_backends_keep_their_kind():
    grid = np.array([0.0, 0.1, 1.0])
    assert isinstance(pass_at_k(0.1, 3), float)
    assert isinstance(pass_at_k(grid, 3), np.ndarray)
    tensor = torch.tensor([0.0, 0.1, 1.0], dtype=torch.float32)
    out = j_maxrl(tensor, 8)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), j_maxrl(grid, 8), rtol=1e-6)
    big = j_maxrl(torch.tensor([1e-9, 0.5], dtype=torch.float64), 10**6)
    np.testing.assert_allclose(big.numpy(), j_maxrl(np.array([1e-9, 0.5]), 10**6), rtol=1e-12)
    w = weight("maxrl", torch.tensor([0.0, 0.5]), 4)
    assert torch.allclose(w, torch.tensor([4.0, 1.875]))
    assert pass_at_k(0.1, 3) == pytest.approx(0.271)


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: pass_at_k(1.5, 2), ValueError),
        (lambda: pass_at_k(-0.1, 2), ValueError),
        (lambda: pass_at_k(float("nan"), 2), ValueError),
        (lambda: pass_at_k(np.array([0.2, np.inf]), 2), ValueError),
        (lambda: pass_at_k(0.5, 0), ValueError),
        (lambda: pass_at_k(0.5, 2.5), TypeError),
        (lambda: pass_at_k("0.5", 2), TypeError),
        (lambda: j_ml(0.0), ValueError),
        (lambda: j_maxrl(0.5, 0), ValueError),
        (lambda: j_maxrl(0.5, -math.inf), TypeError),
        (lambda: weight("grpo", 1.0), ValueError),
        (lambda: weight("grpo", 0.0), ValueError),
        (lambda: weight("ml", np.array([0.0, 0.5])), ValueError),
        (lambda: weight("maxrl", 0.0, math.inf), ValueError),
        (lambda: weight("maxrl", 0.5), ValueError),
        (lambda: weight("rl", 0.5, 3), ValueError),
        (lambda: weight("ppo", 0.5), ValueError),
        (lambda: pass_at_k(torch.tensor([1, 0]), 2), TypeError),
    ],
)
def test_bad_input_raises_clear_errors(call, error):
    with pytest.raises(error):
        call()


def test_error_messages_say_what_was_expected():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pass_at_k(1.5, 2)
    with pytest.raises(ValueError, match="p = 0"):
        j_ml(0.0)
