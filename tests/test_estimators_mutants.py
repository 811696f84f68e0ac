"""grpo at the edges of the dtype's range: constant groups, tiny spreads, tiny eps."""

import math

import pytest
import torch

from companion.estimators import grpo


def grpo_float64(row: list[float], eps: float) -> list[float]:
    """(r - mean) / (std + eps) with Bessel's correction, in units of the largest |r|."""
    unit = max(abs(r) for r in row)
    scaled = [r / unit for r in row]
    mean = sum(scaled) / len(scaled)
    std = math.sqrt(sum((r - mean) ** 2 for r in scaled) / (len(scaled) - 1))
    return [(r - mean) / (std + eps / unit) for r in scaled]


@pytest.mark.parametrize(
    "batch, dtype, eps",
    [
        ([[1.0, 1.0], [0.0, 1.0]], torch.float32, 1e-50),  # eps rounds to 0 in float32
        ([[3e38, -3e38], [3e38, 3e38]], torch.float32, 1e-8),  # eps / 2**127 rounds to 0
        ([[1e308, -1e308], [1e308, 1e308]], torch.float64, 1e-300),
        ([[1e308, 1e308]], torch.float64, 1e-300),
    ],
)
def test_constant_groups_give_zero_whatever_eps(batch, dtype, eps):
    """A constant group has A = 0 / (0 + eps) = 0, also where eps is below the dtype's range
    in the units the group is computed in (it was 0 / 0 = NaN)."""
    rewards = torch.tensor(batch, dtype=dtype)
    got = grpo(rewards, eps=eps)
    for row, advantages in zip(batch, got, strict=True):
        expected = [0.0] * len(row) if len(set(row)) == 1 else grpo_float64(row, eps)
        torch.testing.assert_close(advantages.double(), torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize(
    "row, dtype, eps",
    [
        ([1e-30, 3e-30], torch.float32, 1e-40),  # squares 1e-60 underflow float32
        ([0.0, 1e-39], torch.float32, 1e-44),  # subnormal rewards
        ([1e-200, 3e-200, 2e-200], torch.float64, 1e-300),
        ([2.0, 2.0 + 2**-20, 2.0], torch.float32, 1e-45),  # small spread, squares 1e-13: fine
    ],
)
def test_tiny_spreads_keep_their_std(row, dtype, eps):
    """When the squares of the deviations underflow and eps is smaller still, the group is
    computed in its own units: A is about +-0.7, not (r - mean) / eps (it was +-1e10)."""
    got = grpo(torch.tensor([row], dtype=dtype), eps=eps)[0]
    expected = torch.tensor(grpo_float64(row, eps), dtype=torch.float64)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("row", [[0.0, 1e-39], [0.0, 2.0**-148], [2.0**-147, 0.0, 2.0**-147, 0.0]])
def test_subnormal_rewards_with_the_default_eps_are_not_flushed(row):
    """Rewards in float32's subnormal range: A = (r - mean) / (std + 1e-6), tiny but not 0."""
    got = grpo(torch.tensor([row]))[0]
    expected = torch.tensor(grpo_float64(row, 1e-6), dtype=torch.float64)
    assert bool((got != 0).all())
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize(
    "row, eps",
    [
        # eps below float32's smallest subnormal: it must reach the scaled units from float64
        # (as a float32 it would first round to 2**-149 and give A = 0.29 instead of 0.35)
        ([0.0, 2.0**-149], 1e-45),
        # squares flushed to 0 while eps = 1e-18 is too small to hide the lost std (1.4e-23)
        ([0.0, 2e-23], 1e-18),
    ],
)
def test_tiny_spreads_with_tiny_eps_match_float64(row, eps):
    rewards = torch.tensor([row], dtype=torch.float32)
    expected = grpo(rewards.double(), eps=eps)
    torch.testing.assert_close(grpo(rewards, eps=eps).double(), expected, rtol=2e-6, atol=0)
