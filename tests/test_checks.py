"""Input validation helpers: what each accepts, returns and names in its errors."""

import math

import numpy as np
import pytest
import torch

from companion._checks import check_probability, check_rewards, narrowed


@pytest.mark.parametrize("bad", [0.5, 2.0, -1.0, 0.25])
def test_binary_check_reports_the_offending_value(bad):
    """The message quotes a value that is neither 0 nor 1, not a valid 0 or 1 before it."""
    rewards = torch.tensor([[0.0, 1.0, 0.0, bad, 1.0]])
    with pytest.raises(ValueError, match=rf"got e\.g\. {bad:g};"):
        check_rewards(rewards, binary=True, method="m")


@pytest.mark.parametrize("p", [1.5, np.array([0.2, -0.1]), torch.tensor([0.2, 1.5])])
def test_probability_errors_name_the_argument(p):
    with pytest.raises(ValueError, match=r"^p must lie in \[0, 1\]"):
        check_probability(p)
    with pytest.raises(ValueError, match=r"^q must lie in \[0, 1\]"):
        check_probability(p, "q")


@pytest.mark.parametrize("values", [[-0.5], [1.5], [0.5, -1e-9], [1.0 + 1e-6, 0.5]])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tensor_probabilities_outside_the_unit_interval_are_refused(values, dtype):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check_probability(torch.tensor(values, dtype=dtype))


@pytest.mark.parametrize(
    "p, kind, shape",
    [
        (0.25, "float", ()),
        (1, "float", ()),
        (np.float32(0.5), "float", ()),
        (np.array(0.25), "numpy", ()),
        ([0, 1], "numpy", (2,)),
        ((0.5, 1), "numpy", (2,)),
        (np.array([0.5, 1.0], dtype=np.float32), "numpy", (2,)),
        (np.array([[0, 1]], dtype=np.int64), "numpy", (1, 2)),
    ],
)
def test_floats_and_arrays_come_back_as_float64_arrays(p, kind, shape):
    value, got_kind = check_probability(p)
    assert got_kind == kind
    assert isinstance(value, np.ndarray) and value.dtype == np.float64 and value.shape == shape
    np.testing.assert_array_equal(value, np.asarray(p, dtype=np.float64))


def test_tensors_come_back_unchanged():
    p = torch.tensor([0.0, 1.0], dtype=torch.float16)
    value, kind = check_probability(p)
    assert kind == "torch" and value is p


@pytest.mark.parametrize("empty", [torch.zeros(0), np.zeros((0, 3)), []])
def test_empty_inputs_are_accepted(empty):
    value, kind = check_probability(empty)
    assert len(value) == 0


def test_narrowed_checks_only_conversions_to_a_narrower_range():
    """An inf already in the result is passed through when the target's range is not
    narrower (nothing can overflow there); a narrower target reports it."""
    result = torch.tensor([1.0, math.inf])
    widened_out = narrowed(result, torch.complex64, "m")  # same largest value as float32
    assert widened_out.dtype == torch.complex64
    assert torch.equal(widened_out.real, result)
    assert torch.equal(narrowed(result, torch.float64, "m"), result.double())
    with pytest.raises(OverflowError, match="^m: .*float16"):
        narrowed(result, torch.float16, "m")
