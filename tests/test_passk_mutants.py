"""Properties of companion.passk that its survivors of mutation testing showed untested.

Error messages name the function and the argument; the int64 range is refused exactly at its
edges, whatever container holds the count; scalar input gives a plain float; no warning at the
edges of the estimators' domain; log r_k near the singularity; the early stop of the J sum.
"""

import re
import warnings
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch
from test_passk import fail_ratio, mp_log_fail_ratio

import companion.passk as passk
from companion.passk import estimate_j_maxrl, estimate_pass_at_k

REL = 1e-13
ESTIMATORS = {"estimate_pass_at_k": estimate_pass_at_k, "estimate_j_maxrl": estimate_j_maxrl}
ORDER = {"estimate_pass_at_k": "k", "estimate_j_maxrl": "T"}


# -- messages ------------------------------------------------------------------------------


@pytest.mark.parametrize("caller", list(ESTIMATORS))
@pytest.mark.parametrize(
    "args, error, message",
    [
        ((4.5, 1, 2), TypeError, "{caller}: n must hold whole numbers"),
        ((4, 1.5, 2), TypeError, "{caller}: c must hold whole numbers"),
        (([2**64, None], 1, 1), TypeError, "{caller}: n must hold whole numbers"),
        ((4, [2**64, None], 1), TypeError, "{caller}: c must hold whole numbers"),
        ((2**64, 1, 1), ValueError, "{caller}: n = 18446744073709551616 lies outside"),
        ((10, 2**64, 1), ValueError, "{caller}: c = 18446744073709551616 lies outside"),
        ((4, 1, 5), ValueError, "{caller}: {order} = 5 exceeds the number of samples n = 4"),
        ((4, 5, 2), ValueError, "{caller}: c must satisfy 0 <= c <= n; got c = 5 with n = 4"),
        ((4, 1, 0), ValueError, "{order} must be >= 1"),
        ((4, 1, 2.5), TypeError, "{order} must be a positive integer"),
    ],
)
def test_messages_name_the_function_and_the_argument(caller, args, error, message):
    expected = message.format(caller=caller, order=ORDER[caller])
    with pytest.raises(error, match="^" + re.escape(expected)):
        ESTIMATORS[caller](*args)


# -- the int64 range, at its edges ---------------------------------------------------------

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@pytest.mark.parametrize("estimator", ESTIMATORS.values())
@pytest.mark.parametrize(
    "c, message",
    [
        # the smallest int64 is inside the range of counts int64 can hold: c is refused as
        # below 0, not as beyond int64; one less is beyond int64
        (INT64_MIN, "got c = -9223372036854775808 with n = 10"),
        (np.array([INT64_MIN], dtype=object), "got c = -9223372036854775808 with n = 10"),
        (np.array([INT64_MIN - 1], dtype=object), "c = -9223372036854775809 lies outside"),
        (np.array([5, INT64_MIN - 1], dtype=object), "c = -9223372036854775809 lies outside"),
    ],
)
def test_lowest_int64_is_a_negative_count_not_an_overflow(estimator, c, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        estimator(10, c, 1)


@pytest.mark.parametrize(
    "n",
    [
        np.array([INT64_MAX], dtype=object),
        np.array([INT64_MAX], dtype=np.uint64),
        [INT64_MAX],
        np.array([7, INT64_MAX], dtype=object),
        np.array([7, INT64_MAX], dtype=np.uint64),
    ],
)
def test_largest_int64_accepted_in_any_container(n):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pass_at_1 = estimate_pass_at_k(n, 1, 1)
        j = estimate_j_maxrl(n, 1, 1)
    assert pass_at_1[-1] == pytest.approx(1 / INT64_MAX, rel=REL, abs=0)
    assert j[-1] == pytest.approx(-(1 - 1 / INT64_MAX), rel=REL, abs=0)
    assert pass_at_1.shape == j.shape == (len(n),)


@pytest.mark.parametrize("n", [2.0**62, np.nextafter(2.0**63, 0.0), np.array([200.0, 2.0**62])])
def test_whole_floats_below_2_63_accepted(n):
    expected = 1 / np.asarray(n)
    np.testing.assert_allclose(estimate_pass_at_k(n, 1.0, 1), expected, rtol=REL)
    np.testing.assert_allclose(estimate_j_maxrl(n, 1.0, 1), expected - 1, rtol=REL)


@pytest.mark.parametrize("estimator", ESTIMATORS.values())
@pytest.mark.parametrize(
    "n", [torch.tensor([1e19]), np.array([8.0, 2.0**63], dtype=np.float32)], ids=["tensor", "f32"]
)
def test_float32_counts_beyond_int64_refused(estimator, n):
    with pytest.raises(ValueError, match="n = .* lies outside the supported range"):
        estimator(n, 1, 1)


def test_float32_and_float16_counts_accepted_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 2**63 does not fit in float16: compare in float64
        out = estimate_pass_at_k(torch.tensor([8.0, 16.0]), torch.tensor([1.0, 1.0]), 4)
        half = estimate_j_maxrl(torch.tensor([8.0, 16.0], dtype=torch.float16), np.float32(1), 1)
        half_np = estimate_pass_at_k(np.float16(2048), np.float16(1), 1)
    np.testing.assert_allclose(out, [0.5, 0.25], rtol=REL)
    np.testing.assert_allclose(half, [-7 / 8, -15 / 16], rtol=REL)
    assert half_np == 1 / 2048


@pytest.mark.parametrize("n", [[True, 2**64], [2**64, True], np.array([4, False], dtype=object)])
def test_bools_refused_beside_big_ints(n):
    with pytest.raises(TypeError, match="n must hold whole numbers"):
        estimate_pass_at_k(n, 1, 1)


# -- results ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n, c", [(8, 1), (8.0, 1), (np.int64(8), np.int64(1)), (8, 8)])
def test_scalar_input_gives_a_plain_float(n, c):
    for estimator in ESTIMATORS.values():
        value = estimator(n, c, 4)
        assert type(value) is float
        assert repr(value) == repr(float(value))  # prints as 0.5, not np.float64(0.5)


@pytest.mark.parametrize(
    "n, c, k",
    [
        (5, 1, 5),  # n = k with a success: every subset holds it
        (5, 4, 5),
        (40, 3, 40),
        (10, 8, 1),  # s/x near 1: the exact-ratio branch
        (100, 60, 35),
        (2**62, 2**62 - 2, 1),  # s/x rounds to 1 in float64
        (2**62, 2**62 - 40, 36),
        (INT64_MAX, INT64_MAX - 1, 1),
        (INT64_MAX, 0, 1),  # no success: log r_k is an empty sum
        (INT64_MAX, INT64_MAX, 1),  # n - c < k: the estimate is 1 without any log
        (INT64_MAX, INT64_MAX - 1, 2),
    ],
)
def test_no_warning_at_the_edges(n, c, k):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = estimate_pass_at_k(n, c, k)
        j_value = estimate_j_maxrl(n, c, k)
    if n < 1000:
        assert value == pytest.approx(float(1 - fail_ratio(n, c, k)), rel=REL, abs=0)
        spec = -sum((fail_ratio(n, c, i) / i for i in range(1, k + 1)), Fraction(0))
        assert j_value == pytest.approx(float(spec), rel=REL, abs=0)
    elif n - c < k:
        assert value == 1.0
    else:
        with mpmath.workdps(80):
            exact = -mpmath.expm1(mp_log_fail_ratio(n, c, k))
        assert value == pytest.approx(float(exact), rel=REL, abs=0)


@pytest.mark.parametrize("k", [1, 2, 33])
def test_no_warning_for_the_largest_count_beside_others(k):
    n = np.array([INT64_MAX, INT64_MAX, INT64_MAX, 100, 2**62])
    c = np.array([0, INT64_MAX, INT64_MAX - k, 50, 2**61])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = estimate_pass_at_k(n, c, k)
    assert values[0] == 0.0 and values[1] == 1.0
    for value, n_i, c_i in zip(values[2:], n[2:], c[2:], strict=True):
        with mpmath.workdps(80):
            exact = -mpmath.expm1(mp_log_fail_ratio(int(n_i), int(c_i), k))
        assert value == pytest.approx(float(exact), rel=REL, abs=0)


@pytest.mark.parametrize(
    "n, c, k",
    [
        # s = max(c, k) close to n and m = min(c, k) > 32: the Euler-Maclaurin part needs
        # log(1 - s/x) at x = n + 1/2 from the exact difference x - s
        (10**9, 10**9 - 100, 50),
        (10**9, 50, 10**9 - 100),
        (10**12, 10**12 - 1000, 900),
        (2**62, 40, 2**62 - 41),
    ],
)
def test_log_fail_ratio_with_few_failures_left(n, c, k):
    value = float(passk._log_fail_ratio(np.int64(n), np.int64(c), np.int64(k)))
    with mpmath.workdps(40):
        assert float(abs(value / mp_log_fail_ratio(n, c, k) - 1)) < 1e-14


@pytest.mark.parametrize("block, anchor", [(1, 1), (2, 2), (4096, 64)])
@pytest.mark.parametrize("n, left, T", [(1_500_000_000, 3, 2), (10**9, 4, 3), (10**6, 5, 4)])
def test_j_maxrl_early_stop_keeps_terms_above_the_bound(monkeypatch, block, anchor, n, left, T):
    # almost every sample succeeds: J is about (n - c)/n, tiny, and the second term is
    # (n - c)/n times the first; the stop must compare the tail with the sum, not its inverse
    monkeypatch.setattr(passk, "_J_BLOCK", block)
    monkeypatch.setattr(passk, "_ANCHOR_EVERY", anchor)
    c = n - left
    spec = -sum((fail_ratio(n, c, k) / k for k in range(1, T + 1)), Fraction(0))
    value = estimate_j_maxrl(n, c, T)
    assert value == pytest.approx(float(spec), rel=REL, abs=0)


@pytest.mark.parametrize("n, c, T", [(2**63 - 1, 3 * 10**15, 6000), (2**62, 2**51 + 1, 5000)])
def test_j_maxrl_early_stop_with_huge_counts(n, c, T):
    # after the first 4096 terms, 4096 c exceeds 2**63: the bound on the tail must not wrap
    # around in int64 and stop the sum while r_k is still 0.1
    with mpmath.workdps(30):
        ratio, total = mpmath.mpf(1), mpmath.mpf(0)
        for k in range(1, T + 1):
            ratio *= mpmath.mpf(n - c - k + 1) / (n - k + 1)
            total += ratio / k
    assert estimate_j_maxrl(n, c, T) == pytest.approx(float(-total), rel=REL, abs=0)
    assert estimate_j_maxrl(np.array([n, n]), np.array([c, 1]), T)[0] == pytest.approx(
        float(-total), rel=REL, abs=0
    )
