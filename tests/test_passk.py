"""Unbiased pass@k and J^(T) from counts: exact specs, mpmath at large n, unbiasedness, errors."""

import math
import re
import tracemalloc
import warnings
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import companion.passk as passk
from companion.objectives import j_maxrl, pass_at_k
from companion.passk import estimate_j_maxrl, estimate_pass_at_k

REL = 1e-13  # the promise is 1e-12; measured errors are below 1e-15


def fail_ratio(n: int, c: int, k: int) -> Fraction:
    """C(n-c, k) / C(n, k) with exact integers (0 when n - c < k)."""
    return Fraction(math.comb(n - c, k), math.comb(n, k))


def spec_pass_at_k(n: int, c: int, k: int) -> Fraction:
    """Chen et al.'s definition, exactly: 1 - C(n-c, k) / C(n, k)."""
    return 1 - fail_ratio(n, c, k)


def spec_j_maxrl(n: int, c: int, T: int) -> Fraction:
    """The definition, exactly: -sum_{k=1}^T C(n-c, k) / (k C(n, k))."""
    return -sum((fail_ratio(n, c, k) / k for k in range(1, T + 1)), Fraction(0))


def mp_log_fail_ratio(n: int, c: int, k: int) -> mpmath.mpf:
    """log C(n-c, k)/C(n, k) to 80 digits, for n far beyond exact enumeration."""
    with mpmath.workdps(80):
        return (
            mpmath.loggamma(n - c + 1)
            - mpmath.loggamma(n - c - k + 1)
            - mpmath.loggamma(n + 1)
            + mpmath.loggamma(n - k + 1)
        )


def relative_error(value: float, exact) -> float:
    """|value - exact| / |exact|; exact is a Fraction (rounded once to float) or an mpf."""
    if isinstance(exact, Fraction):
        exact = float(exact)
        return 0.0 if exact == value else abs(value - exact) / abs(exact)
    with mpmath.workdps(40):
        return 0.0 if exact == value else float(abs((value - exact) / exact))


@st.composite
def n_c_k(draw, max_n=200):
    n = draw(st.integers(1, max_n))
    return n, draw(st.integers(0, n)), draw(st.integers(1, n))


@st.composite
def count_arrays(draw, max_order: int):
    """(n, c, order): 1-12 problems with order <= n <= 4 order and 0 <= c <= n."""
    order = draw(st.integers(1, max_order))
    size = draw(st.integers(1, 12))
    ns = draw(st.lists(st.integers(order, 4 * order), min_size=size, max_size=size))
    counts = [draw(st.integers(0, n)) for n in ns]
    return np.array(ns), np.array(counts), order


@pytest.mark.parametrize(
    "estimator, spec, max_order",
    [(estimate_pass_at_k, spec_pass_at_k, 64), (estimate_j_maxrl, spec_j_maxrl, 24)],
    ids=["pass_at_k", "j_maxrl"],
)
@given(data=st.data())
def test_vectorised_matches_scalar_loop_and_spec(estimator, spec, max_order, data):
    n_arr, c_arr, order = data.draw(count_arrays(max_order))
    vectorised = estimator(n_arr, c_arr, order)
    assert vectorised.shape == n_arr.shape
    for value, n, c in zip(vectorised, n_arr, c_arr, strict=True):
        assert value == pytest.approx(estimator(int(n), int(c), order), rel=1e-15, abs=0)
        assert relative_error(value, spec(int(n), int(c), order)) < REL
    grid = estimator(n_arr[:, None], c_arr[None, :] % (n_arr.min() + 1), order)
    assert grid.shape == (n_arr.size, n_arr.size)


# -- estimate_pass_at_k ---------------------------------------------------------------------


@given(n_c_k())
def test_pass_at_k_matches_exact_definition(case):
    n, c, k = case
    exact = spec_pass_at_k(n, c, k)
    assert relative_error(estimate_pass_at_k(n, c, k), exact) < REL


def test_pass_at_k_exact_on_every_triple_up_to_n_80():
    # both branches (<= 32 factors summed directly, Euler-Maclaurin beyond), n - c = k included
    for n in range(1, 81):
        for k in range(1, n + 1):
            values = estimate_pass_at_k(n, np.arange(n + 1), k)
            for c in range(n + 1):
                assert relative_error(values[c], spec_pass_at_k(n, c, k)) < REL, (n, c, k)


@given(
    st.integers(10**6, 10**9),
    st.integers(1, 3000),
    st.integers(1, 3000),
    st.booleans(),
)
def test_pass_at_k_large_n_against_mpmath(n, c, k, near_singular):
    if near_singular:  # n - c - k small: the hardest place for the Euler-Maclaurin part
        c = n - k - c % 50
    value = estimate_pass_at_k(n, c, k)
    with mpmath.workdps(80):
        exact = -mpmath.expm1(mp_log_fail_ratio(n, c, k))
    assert relative_error(value, exact) < REL


@pytest.mark.parametrize("n", [10**7, 10**9, 10**12, 2**62])
@pytest.mark.parametrize("c, k", [(1, 1), (1, 1000), (3, 2), (10, 10), (1000, 1), (500, 700)])
def test_pass_at_k_no_cancellation_at_huge_n(n, c, k):
    # the old cumulative-sum table lost 3e-9 here at n = 1e7 and could not run at 1e12
    with mpmath.workdps(80):
        exact = -mpmath.expm1(mp_log_fail_ratio(n, c, k))
    assert relative_error(estimate_pass_at_k(n, c, k), exact) < REL


def test_pass_at_k_huge_c_and_k_against_mpmath():
    for n, c, k in [(10**9, 4 * 10**8, 5 * 10**8), (10**9, 10**5, 10**5), (2**62, 2**40, 2**41)]:
        with mpmath.workdps(80):
            exact = -mpmath.expm1(mp_log_fail_ratio(n, c, k))
        assert relative_error(estimate_pass_at_k(n, c, k), exact) < REL


def test_log_fail_ratio_relative_error_near_the_singularity():
    # the J estimator needs r_k itself: log r_k to 1e-14 relative even when r_k is tiny
    for n, c, k in [(87, 43, 44), (5000, 2400, 2600), (10**9, 5 * 10**8 - 40, 5 * 10**8)]:
        value = float(passk._log_fail_ratio(np.int64(n), np.int64(c), np.int64(k)))
        assert relative_error(value, mp_log_fail_ratio(n, c, k)) < 1e-14


def test_pass_at_k_memory_does_not_grow_with_n():
    tracemalloc.start()
    try:
        value = estimate_pass_at_k(10**12, 1, 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert value == pytest.approx(1e-12, rel=REL, abs=0)
    assert peak < 100_000  # bytes; the old table of size n would need 7 TiB


def test_largest_int64_count_works_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = estimate_pass_at_k(2**63 - 1, 1, 1)
        j_value = estimate_j_maxrl(2**63 - 1, 2**63 - 2, 1)
    assert value == pytest.approx(1 / (2**63 - 1), rel=REL, abs=0)
    assert j_value == pytest.approx(-1 / (2**63 - 1), rel=REL, abs=0)


@pytest.mark.parametrize(
    "n, shown",
    [
        (2**63, "9223372036854775808"),
        ([2**63, 5], "9223372036854775808"),
        (np.uint64(2**63), "9223372036854775808"),
        (2**64, "18446744073709551616"),
        (1e19, "1e+19"),
        (2.0**63, "9.223372036854776e+18"),
        (np.array([2.0**63]), "9.223372036854776e+18"),
        (-(2**63) - 1, "-9223372036854775809"),
    ],
)
@pytest.mark.parametrize("estimator", [estimate_pass_at_k, estimate_j_maxrl])
def test_counts_beyond_int64_refused_with_the_value_given(estimator, n, shown):
    with pytest.raises(ValueError, match=re.escape(f"n = {shown} lies outside")):
        estimator(n, 1, 1)


def test_no_negative_zero():
    assert math.copysign(1.0, estimate_pass_at_k(10, 0, 3)) == 1.0
    assert np.all(np.signbit(estimate_pass_at_k(np.array([5, 10**9]), 0, 2)) == 0)
    assert math.copysign(1.0, estimate_j_maxrl(10, 10, 3)) == 1.0
    assert np.all(np.signbit(estimate_j_maxrl(np.array([5, 10**9]), np.array([5, 10**9]), 2)) == 0)


@pytest.mark.parametrize(
    "order", [3, 3.0, np.int64(3), np.uint8(3), np.int32(3), np.float64(3), np.float32(3)]
)
def test_numpy_scalars_accepted_as_k_and_T(order):
    assert relative_error(estimate_pass_at_k(10, 2, order), spec_pass_at_k(10, 2, 3)) < REL
    assert estimate_j_maxrl(10, 2, order) == pytest.approx(float(spec_j_maxrl(10, 2, 3)), rel=REL)


def test_boundary_between_the_branches():
    # n - c = k - 1: every k-subset holds a correct sample (exactly 1); n - c = k: exactly one
    # k-subset fails, so the estimate is 1 - 1/C(n, k)
    for n, k in [(10, 3), (1000, 2), (60, 5), (3000, 3)]:
        assert estimate_pass_at_k(n, n - k + 1, k) == 1.0
        fail = Fraction(1, math.comb(n, k))
        assert estimate_pass_at_k(n, n - k, k) == pytest.approx(1 - float(fail), rel=0, abs=3e-16)
        assert 1 - float(fail) < 1.0  # so that returning 1 here would fail
        log_fail = passk._log_fail_ratio(np.int64(n), np.int64(n - k), np.int64(k))
        assert relative_error(math.exp(float(log_fail)), fail) < REL


def test_accepts_tensors_lists_and_whole_floats():
    out = estimate_pass_at_k(torch.tensor([8, 16]), torch.tensor([1, 1]), 4)
    np.testing.assert_allclose(out, [0.5, 0.25], rtol=REL)
    assert estimate_pass_at_k([8.0, 16.0], [1, 1], 4).tolist() == pytest.approx([0.5, 0.25])
    assert isinstance(estimate_pass_at_k(8.0, 1, 4), float)
    assert isinstance(estimate_pass_at_k(np.int64(8), 1, 4), float)
    assert isinstance(estimate_j_maxrl(8, np.int64(1), 4), float)
    assert isinstance(estimate_j_maxrl(8.0, 1, 4), float)
    assert estimate_j_maxrl(np.array(8), 1, 4).shape == ()
    assert estimate_pass_at_k(np.zeros((0,), dtype=int), np.zeros((0,), dtype=int), 1).shape == (0,)


@pytest.mark.parametrize("n, k", [(10, 1), (10, 4), (25, 25), (64, 16), (200, 77)])
def test_pass_at_k_unbiased_over_the_binomial(n, k):
    c = np.arange(n + 1)
    for p in [0.01, 0.2, 0.5, 0.93]:
        probability = np.array([math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in c])
        expectation = float(probability @ estimate_pass_at_k(n, c, k))
        assert expectation == pytest.approx(pass_at_k(p, k), abs=1e-12)


# -- estimate_j_maxrl -----------------------------------------------------------------------


@given(n_c_k(max_n=120))
def test_j_maxrl_matches_exact_definition(case):
    n, c, T = case
    assert relative_error(estimate_j_maxrl(n, c, T), spec_j_maxrl(n, c, T)) < REL


@pytest.mark.parametrize("block, anchor", [(1, 1), (3, 2), (7, 4), (64, 8), (4096, 64)])
def test_j_maxrl_blocks_and_early_stop(monkeypatch, block, anchor):
    # many blocks, compensated across them, exact anchors between runs of products; the early
    # stop must not drop what matters
    monkeypatch.setattr(passk, "_J_BLOCK", block)
    monkeypatch.setattr(passk, "_ANCHOR_EVERY", anchor)
    for n, c, T in [(60, 1, 30), (60, 5, 50), (90, 40, 45), (200, 3, 150), (200, 120, 70)]:
        assert relative_error(estimate_j_maxrl(n, c, T), spec_j_maxrl(n, c, T)) < REL


def test_j_maxrl_compensated_across_many_blocks(monkeypatch):
    # one term per block: plain addition of 5000 blocks drifts by about 5e-15 here, the
    # compensated sum stays below 1e-16
    monkeypatch.setattr(passk, "_J_BLOCK", 1)
    monkeypatch.setattr(passk, "_ANCHOR_EVERY", 1)
    for n in (10**5, 10**6):
        with mpmath.workdps(40):
            ratio, total = mpmath.mpf(1), mpmath.mpf(0)
            for k in range(1, 5001):
                ratio *= mpmath.mpf(n - k) / (n - k + 1)
                total += ratio / k
        assert relative_error(estimate_j_maxrl(n, 1, 5000), -total) < 1e-15


def test_j_maxrl_closed_forms():
    # the whole series (T >= n - c) is -(H_n - H_c); with c = 0 every ratio is 1: -H_T
    for n in range(1, 41):
        for c in range(n + 1):
            harmonic = sum((Fraction(1, j) for j in range(c + 1, n + 1)), Fraction(0))
            assert spec_j_maxrl(n, c, n) == -harmonic
            assert relative_error(estimate_j_maxrl(n, c, n), -harmonic) < REL
    with mpmath.workdps(40):
        for n, c, T in [
            (10**9, 0, 10**9),
            (10**9, 7, 10**9 - 7),
            (10**9, 0, 12345),
            (2**62, 3, 2**62),
        ]:
            exact = mpmath.harmonic(T) if c == 0 else mpmath.harmonic(n) - mpmath.harmonic(c)
            assert relative_error(estimate_j_maxrl(n, c, T), -exact) < REL


@pytest.mark.parametrize(
    "n, c, T", [(10**9, 1, 5), (10**9, 10**6, 40), (10**9, 10**9 - 30, 20), (10**5, 3, 9000)]
)
def test_j_maxrl_large_n_against_mpmath(n, c, T):
    with mpmath.workdps(50):
        ratio, total = mpmath.mpf(1), mpmath.mpf(0)
        for k in range(1, min(T, n - c) + 1):
            ratio *= mpmath.mpf(n - c - k + 1) / (n - k + 1)
            total += ratio / k
        assert relative_error(estimate_j_maxrl(n, c, T), -total) < REL


@pytest.mark.parametrize("n, T", [(1, 1), (6, 2), (12, 12), (30, 7), (80, 80)])
def test_j_maxrl_unbiased_by_exact_binomial_sums(n, T):
    counts = np.arange(n + 1)
    estimates = estimate_j_maxrl(n, counts, T)
    exact_estimates = [spec_j_maxrl(n, c, T) for c in range(n + 1)]
    for p in [Fraction(1, 50), Fraction(1, 3), Fraction(9, 10)]:
        pmf = [math.comb(n, c) * p**c * (1 - p) ** (n - c) for c in range(n + 1)]
        exact_mean = sum(w * v for w, v in zip(pmf, exact_estimates, strict=True))
        truth = -sum((1 - p) ** k / k for k in range(1, T + 1))
        assert exact_mean == truth  # unbiased, in exact rational arithmetic
        mean = float(np.array([float(w) for w in pmf]) @ estimates)
        assert mean == pytest.approx(j_maxrl(float(p), T), rel=1e-12, abs=1e-14)
        with mpmath.workdps(40):
            q = 1 - mpmath.mpf(p.numerator) / p.denominator
            reference = -mpmath.fsum(q**k / k for k in range(1, T + 1))
        assert relative_error(mean, reference) < 1e-12


def test_j_maxrl_accepts_tensors_and_is_never_positive():
    out = estimate_j_maxrl(torch.tensor([8, 16, 16]), torch.tensor([1, 16, 0]), 4)
    assert out[1] == 0.0 and (out <= 0).all()
    assert out[2] == pytest.approx(-(1 + 1 / 2 + 1 / 3 + 1 / 4), rel=REL)


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, error, message",
    [
        ((4, 1, 5), ValueError, "n >= k"),
        ((4, 5, 2), ValueError, "0 <= c <= n; got c = 5 with n = 4"),
        ((4, -1, 2), ValueError, "0 <= c <= n; got c = -1 with n = 4"),
        ((np.array([9, 3]), np.array([2, 7]), 2), ValueError, "got c = 7 with n = 3"),
        ((4, 1, 0), ValueError, ">= 1"),
        ((4, 1, np.float32(2.5)), TypeError, "positive integer"),
        ((4, 1, True), TypeError, "positive integer"),
        ((4.5, 1, 2), TypeError, "whole numbers"),
        ((np.array([4, 8]), np.array([1.5, 2]), 2), TypeError, "whole numbers"),
        ((4, float("nan"), 2), TypeError, "whole numbers"),
        ((np.array([True]), 0, 1), TypeError, "whole numbers"),
        (([4, "a"], 1, 1), TypeError, "whole numbers"),
    ],
)
def test_pass_at_k_bad_input(args, error, message):
    with pytest.raises(error, match=message):
        estimate_pass_at_k(*args)


@pytest.mark.parametrize(
    "args, error, message",
    [
        ((4, 1, 5), ValueError, "T = 5 exceeds the number of samples n = 4"),
        ((np.array([9, 3]), 1, 4), ValueError, "n = 3; the unbiased estimator needs n >= T"),
        ((4, 5, 2), ValueError, "0 <= c <= n"),
        ((4, 1, 0), ValueError, ">= 1"),
        ((4, 1, 2.5), TypeError, "positive integer"),
        ((4, 1.5, 2), TypeError, "whole numbers"),
    ],
)
def test_j_maxrl_bad_input(args, error, message):
    with pytest.raises(error, match=message):
        estimate_j_maxrl(*args)


def test_j_maxrl_allows_T_equal_to_n():
    assert estimate_j_maxrl(5, 2, 5) == pytest.approx(-(1 / 3 + 1 / 4 + 1 / 5), rel=REL)


def test_j_maxrl_early_stop_keeps_the_slow_tail():
    # c << n: the ratios fall by only 1 - c/n per term, so the tail after a tiny term is still
    # n/c times that term; T = n - c - 1 misses only r_{n-c}/(n-c) = 1/(C(n, c) (n-c)) ~ 0
    n, c = 10**7, 100
    with mpmath.workdps(40):
        exact = -(mpmath.harmonic(n) - mpmath.harmonic(c))
    assert relative_error(estimate_j_maxrl(n, c, n - c - 1), exact) < REL
