"""Advantage estimators: loop specs (hypothesis), exact expectations, published cases, errors."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from companion.estimators import (
    ADVANTAGES,
    grpo,
    maxrl,
    policy_gradient_loss,
    reinforce,
    rloo,
)
from companion.exact import gradient_moments, pass_rate_and_gradient
from companion.objectives import weight

# ---------------------------------------------------------------- loop specs, one group at a time


def spec_rloo(group: list[float]) -> list[float]:
    n = len(group)
    return [r - sum(group[j] for j in range(n) if j != i) / (n - 1) for i, r in enumerate(group)]


def spec_grpo(group: list[float], scale: str, eps: float, unbiased: bool) -> list[float]:
    n = len(group)
    mean = sum(group) / n
    if scale == "none":
        return [r - mean for r in group]
    var = sum((r - mean) ** 2 for r in group) / (n - 1 if unbiased else n)
    return [(r - mean) / (math.sqrt(var) + eps) for r in group]


def spec_maxrl(group: list[float], variant: str) -> list[float]:
    n, k = len(group), sum(group)
    if variant == "divide_by_k":  # (1/K) sum r_i S_i == (1/N) sum A_i S_i
        return [n * r / k if k else 0.0 for r in group]
    if variant == "control_variate":  # sum (r_i/K - 1/N) S_i
        return [n * (r / k - 1 / n) if k else -1.0 for r in group]
    mean = k / n
    return [(r - mean) / mean if k else 0.0 for r in group]


def rows(spec, rewards, **kwargs):
    return torch.tensor([spec(row, **kwargs) for row in rewards.tolist()], dtype=torch.float64)


def reward_batches(binary: bool, min_n: int = 1):
    values = st.sampled_from([0.0, 1.0]) if binary else st.floats(-5, 5, allow_nan=False)
    return st.integers(1, 6).flatmap(
        lambda p: st.integers(min_n, 9).flatmap(
            lambda n: st.lists(
                st.lists(values, min_size=n, max_size=n), min_size=p, max_size=p
            ).map(lambda data: torch.tensor(data, dtype=torch.float64))
        )
    )


@given(reward_batches(binary=False, min_n=2))
def test_rloo_matches_loop_spec(rewards):
    torch.testing.assert_close(rloo(rewards), rows(spec_rloo, rewards))


@given(
    reward_batches(binary=False, min_n=2),
    st.sampled_from(["group", "none"]),
    st.sampled_from([1e-6, 1e-4]),
    st.booleans(),
)
def test_grpo_matches_loop_spec(rewards, scale, eps, unbiased):
    expected = rows(spec_grpo, rewards, scale=scale, eps=eps, unbiased=unbiased)
    torch.testing.assert_close(grpo(rewards, scale=scale, eps=eps, unbiased=unbiased), expected)


@given(
    reward_batches(binary=True, min_n=2),
    st.sampled_from(["algorithm1", "divide_by_k", "control_variate"]),
)
def test_maxrl_matches_loop_spec(rewards, variant):
    torch.testing.assert_close(maxrl(rewards, variant), rows(spec_maxrl, rewards, variant=variant))


@given(reward_batches(binary=False))
def test_reinforce_is_the_reward(rewards):
    out = reinforce(rewards)
    torch.testing.assert_close(out, rewards)
    assert out.data_ptr() != rewards.data_ptr()


# ---------------------------------------------------------------------- published and edge cases


def test_published_maxrl_case_and_constant_groups():
    torch.testing.assert_close(
        maxrl(torch.tensor([[1.0, 0.0, 0.0, 0.0]])), torch.tensor([[3.0, -1.0, -1.0, -1.0]])
    )
    assert torch.equal(maxrl(torch.zeros(3, 8)), torch.zeros(3, 8))
    assert torch.equal(maxrl(torch.ones(3, 8)), torch.zeros(3, 8))
    assert torch.equal(maxrl(torch.zeros(2, 4), "control_variate"), -torch.ones(2, 4))
    assert torch.equal(grpo(torch.ones(2, 5)), torch.zeros(2, 5))


def test_algorithm1_equals_control_variate_when_some_sample_succeeds():
    rewards = torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]])
    torch.testing.assert_close(maxrl(rewards), maxrl(rewards, "control_variate"))


def test_dtype_and_device_are_kept():
    rewards = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.bfloat16)
    for name, fn in ADVANTAGES.items():
        out = fn(rewards)
        assert out.dtype == torch.bfloat16 and out.device == rewards.device, name


# ------------------------------------------------- exact expectations: the documented objectives


def random_policies():
    generator = torch.Generator().manual_seed(2026)
    for num_outputs in range(2, 6):
        for _ in range(3):
            logits = torch.randn(num_outputs, generator=generator, dtype=torch.float64) * 1.5
            success = torch.rand(num_outputs, generator=generator) < 0.5
            success[0] = True  # at least one correct output
            if bool(success.all()):
                success[-1] = False
            yield logits, success


def expected_weight(name: str, p: float, n: int) -> float:
    """The documented c_N(p) with E[g] = c_N(p) grad p."""
    if name in ("reinforce", "rloo"):
        return 1.0
    if name == "dr_grpo":
        return (n - 1) / n
    if name in ("maxrl_divide_by_k", "maxrl_control_variate"):
        return weight("maxrl", p, n)
    if name == "maxrl":
        return weight("maxrl", p, n - 1) if n > 1 else 0.0
    raise KeyError(name)


@pytest.mark.parametrize(
    "name", ["reinforce", "rloo", "dr_grpo", "maxrl", "maxrl_divide_by_k", "maxrl_control_variate"]
)
def test_expectation_is_the_documented_gradient(name):
    for logits, success in random_policies():
        p, grad_p = pass_rate_and_gradient(logits, success)
        for n in range(1, 9):
            if n == 1 and name in ("rloo", "dr_grpo", "maxrl"):
                continue
            mean, _ = gradient_moments(logits, success, n, ADVANTAGES[name])
            target = expected_weight(name, p, n) * grad_p
            assert torch.allclose(mean, target, atol=1e-9, rtol=0), (name, n, p)


def test_grpo_expectation_tends_to_its_weight_function():
    logits = torch.tensor([0.0, 1.2], dtype=torch.float64)
    success = torch.tensor([True, False])
    p, grad_p = pass_rate_and_gradient(logits, success)
    mean, _ = gradient_moments(logits, success, 512, ADVANTAGES["grpo"])
    ratio = float(mean @ grad_p / (grad_p @ grad_p))
    assert ratio == pytest.approx(weight("grpo", p), rel=0.02)


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("name", sorted(ADVANTAGES))
def test_bad_shapes_and_values_raise(name):
    fn = ADVANTAGES[name]
    with pytest.raises(ValueError, match=r"\(P, N\)"):
        fn(torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="empty"):
        fn(torch.zeros(2, 0))
    with pytest.raises(ValueError, match="NaN"):
        fn(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(TypeError, match="floating"):
        fn(torch.tensor([[1, 0]]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        fn([[1.0, 0.0]])


@pytest.mark.parametrize("name", ["rloo", "grpo", "dr_grpo", "maxrl"])
def test_methods_that_need_two_samples_refuse_one(name):
    with pytest.raises(ValueError, match="N = "):
        ADVANTAGES[name](torch.tensor([[1.0], [0.0]]))


def test_algorithm1_with_one_sample_says_it_is_zero():
    with pytest.raises(ValueError, match="identically zero"):
        maxrl(torch.tensor([[1.0]]))


@pytest.mark.parametrize("variant", ["algorithm1", "divide_by_k", "control_variate"])
def test_maxrl_rejects_non_binary_rewards(variant):
    with pytest.raises(ValueError, match=r"\{0, 1\}"):
        maxrl(torch.tensor([[0.5, 0.0, 1.0]]), variant)
    with pytest.raises(ValueError, match="variant"):
        maxrl(torch.tensor([[1.0, 0.0]]), "mean")


def test_grpo_rejects_bad_options():
    with pytest.raises(ValueError, match="eps"):
        grpo(torch.tensor([[1.0, 1.0]]), eps=0.0)
    with pytest.raises(ValueError, match="scale"):
        grpo(torch.tensor([[1.0, 0.0]]), scale="batch")


# ---------------------------------------------------------------------- policy_gradient_loss


def test_loss_gradient_is_the_estimator():
    torch.manual_seed(0)
    logits = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)  # (P, M)
    samples = torch.multinomial(torch.softmax(logits, -1).detach(), 6, replacement=True)  # (P, N)
    rewards = (samples == 0).double()
    advantages = maxrl(rewards, "control_variate")
    logprobs = torch.log_softmax(logits, -1).gather(1, samples)  # (P, N)
    policy_gradient_loss(logprobs, advantages).backward()
    # Spec: -(1/(P N)) sum_x sum_i A_i (e_{z_i} - pi).
    probs = torch.softmax(logits, -1).detach()
    expected = torch.zeros_like(probs)
    for x in range(4):
        for i in range(6):
            score = -probs[x].clone()
            score[samples[x, i]] += 1
            expected[x] -= advantages[x, i] * score / (4 * 6)
    torch.testing.assert_close(logits.grad, expected)


def test_token_aggregations():
    advantages = torch.tensor([[1.0, -1.0]])
    token_logprobs = torch.tensor([[[-1.0, -2.0, -3.0], [-1.0, -1.0, 0.0]]], requires_grad=True)
    mask = torch.tensor([[[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]])
    sequence = policy_gradient_loss(token_logprobs, advantages, mask)
    sequence_logprobs = (token_logprobs * mask).sum(-1)
    assert torch.allclose(sequence, policy_gradient_loss(sequence_logprobs, advantages))
    token_mean = policy_gradient_loss(token_logprobs, advantages, mask, aggregation="token_mean")
    assert token_mean.item() == pytest.approx(-(1 * -6 + -1 * -2) / 5)


def test_loss_rejects_bad_input():
    lp = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="same shape"):
        policy_gradient_loss(lp, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="NaN"):
        policy_gradient_loss(lp, torch.full((2, 3), float("inf")))
    with pytest.raises(ValueError, match="no tokens"):
        policy_gradient_loss(
            torch.zeros(2, 3, 4), torch.zeros(2, 3), torch.zeros(2, 3, 4), aggregation="token_mean"
        )
    with pytest.raises(ValueError, match="aggregation"):
        policy_gradient_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3), aggregation="sum")
    with pytest.raises(ValueError, match="mask"):
        policy_gradient_loss(lp, torch.zeros(2, 3), mask=torch.ones(2, 3))
    with pytest.raises(TypeError):
        policy_gradient_loss([0.0], torch.zeros(2, 3))
    with pytest.raises(ValueError, match="same device"):
        policy_gradient_loss(torch.zeros(2, 3, device="meta"), torch.zeros(2, 3))


# ------------------------------------------------------------- edges: masks, dtypes, autograd


@pytest.mark.parametrize("padding", [float("-inf"), float("nan")])
@pytest.mark.parametrize("aggregation", ["sequence", "token_mean"])
def test_padded_log_probs_never_reach_the_loss(padding, aggregation):
    advantages = torch.tensor([[1.0, -2.0]])
    clean = torch.tensor([[[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]]])
    mask = torch.tensor([[[1, 1, 0], [1, 0, 0]]])
    padded = torch.where(mask.bool(), clean, padding).requires_grad_(True)
    for given_mask in (mask, mask.bool(), mask.float()):
        loss = policy_gradient_loss(padded, advantages, given_mask, aggregation=aggregation)
        expected = policy_gradient_loss(clean, advantages, given_mask, aggregation=aggregation)
        assert torch.isfinite(loss) and loss.item() == expected.item()
        (gradient,) = torch.autograd.grad(loss, padded)
        assert torch.isfinite(gradient).all()
        assert torch.equal(gradient[~mask.bool()], torch.zeros(3))
        assert bool((gradient[mask.bool()] != 0).all())


def test_loss_refuses_integer_log_probs_odd_masks_and_overflowing_advantages():
    with pytest.raises(TypeError, match="floating-point log-probabilities"):
        policy_gradient_loss(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="1 for generated tokens"):
        policy_gradient_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2), torch.full((1, 2, 3), 0.5))
    with pytest.raises(TypeError, match="mask must be a torch tensor"):
        policy_gradient_loss(torch.zeros(1, 1, 2), torch.zeros(1, 1), [[[1, 0]]])
    with pytest.raises(OverflowError, match=r"^policy_gradient_loss: .* torch.float16"):
        policy_gradient_loss(torch.zeros(1, 2, dtype=torch.float16), torch.tensor([[7e4, 0.0]]))


@pytest.mark.parametrize(
    "eps, error",
    [
        (None, TypeError),
        ("1e-6", TypeError),
        (True, TypeError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (-1e-6, ValueError),
    ],
)
def test_grpo_eps_is_checked(eps, error):
    with pytest.raises(error, match="eps"):
        grpo(torch.tensor([[1.0, 0.0]]), eps=eps)


@pytest.mark.parametrize("scale", ["group", "none"])
@pytest.mark.parametrize("unbiased", [True, False])
def test_grpo_is_differentiable(scale, unbiased):
    rewards = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    rewards.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda r: grpo(r, scale=scale, unbiased=unbiased), rewards)
    # The overflow-safe branch (rewards near float64's largest value) is differentiable too.
    huge = (rewards.detach() * 1e306).requires_grad_(True)
    advantages = grpo(huge, scale=scale, unbiased=unbiased)
    (gradient,) = torch.autograd.grad(advantages[:, 0].sum(), huge)
    # Same formula in units 1e306 times smaller: eps scales with the rewards.
    (reference,) = torch.autograd.grad(
        grpo(rewards, scale=scale, eps=1e-6 / 1e306, unbiased=unbiased)[:, 0].sum(), rewards
    )
    factor = 1e306 if scale == "group" else 1.0
    torch.testing.assert_close(gradient * factor, reference, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("unbiased", [True, False])
def test_grpo_gradient_at_a_constant_group_is_finite_and_exact(unbiased):
    # Near a constant group A(r + t v) = t v_c / (t std(v) + eps) = t v_c / eps + O(t^2): the
    # derivative is the centring map over eps. Through sqrt at 0 autograd would give NaN.
    rewards = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    rewards.requires_grad_(True)
    upstream = torch.tensor([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0]], dtype=torch.float64)
    (gradient,) = torch.autograd.grad((grpo(rewards, unbiased=unbiased) * upstream).sum(), rewards)
    assert bool(torch.isfinite(gradient).all())
    expected = (upstream[0] - upstream[0].mean()) / 1e-6
    torch.testing.assert_close(gradient[0], expected, rtol=1e-12, atol=0)
    direction = torch.tensor([0.3, -0.1, 0.5], dtype=torch.float64)
    step = 1e-12  # t std(v) / eps ~ 3e-7: the finite difference is the derivative to 1e-6
    moved = grpo((step * direction)[None], unbiased=unbiased)[0]  # 0 + t v: no rounding
    torch.testing.assert_close(
        (moved * upstream[0]).sum() / step, gradient[0] @ direction, rtol=1e-5, atol=0
    )


def test_rloo_is_differentiable():
    rewards = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rloo, rewards)


@pytest.mark.parametrize(
    "row, dtype",
    [
        ([0.0, 400.0], torch.float16),
        ([1e20, -1e20], torch.float32),
        ([1e200, -1e200], torch.float64),
        ([3.4e38, -3.4e38, -3.4e38], torch.float32),
        ([1.7e308, -1.7e308, 1.7e308], torch.float64),
        ([6e4, 6e4, 5e4], torch.float16),
    ],
)
def test_grpo_of_extreme_rewards_is_never_a_silent_zero(row, dtype):
    rewards = torch.tensor([row], dtype=dtype)
    # The loop spec in units of the largest reward (A is unchanged when r and eps scale).
    unit = max(abs(r) for r in row)
    exact = rows(
        spec_grpo,
        torch.tensor([[r / unit for r in row]], dtype=torch.float64),
        scale="group",
        eps=1e-6 / unit,
        unbiased=True,
    )
    got = grpo(rewards)
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), exact, rtol=2e-3, atol=1e-3)


def test_constant_groups_at_the_dtype_limit_give_zero():
    for name in ("rloo", "grpo", "dr_grpo"):
        for dtype in (torch.float16, torch.float32, torch.float64):
            rewards = torch.full((2, 3), torch.finfo(dtype).max, dtype=dtype)
            assert torch.equal(ADVANTAGES[name](rewards), torch.zeros_like(rewards)), name


@pytest.mark.parametrize("name", ["rloo", "dr_grpo"])
def test_advantages_that_overflow_raise(name):
    rewards = torch.tensor([[3.4e38, -3.4e38, -3.4e38]])  # centred: 4.5e38 > float32's max
    with pytest.raises(OverflowError, match=r"^(rloo|grpo): an advantage overflows torch.float32"):
        ADVANTAGES[name](rewards)
    half = torch.tensor([[6.5e4, -6.5e4, -6.5e4]], dtype=torch.float16)  # fits, A does not
    with pytest.raises(OverflowError, match=r"^(rloo|grpo): a result of magnitude"):
        ADVANTAGES[name](half)
    torch.testing.assert_close(
        ADVANTAGES[name](rewards.double()).max(),
        torch.tensor((3.4e38 + 3.4e38 / 3) * (1.5 if name == "rloo" else 1.0), dtype=torch.float64),
    )


def test_half_precision_counts_do_not_overflow():
    rewards = torch.zeros(1, 70000, dtype=torch.float16)
    rewards[0, :3] = 1.0
    for name, expected in [("maxrl", 70000 / 3 - 1), ("rloo", 1 - 2 / 69999)]:
        got = ADVANTAGES[name](rewards)
        assert torch.isfinite(got).all(), name
        assert float(got[0, 0]) == pytest.approx(expected, rel=1e-3), name
    ones = torch.ones(1, 70000, dtype=torch.float16)
    assert torch.equal(rloo(ones), torch.zeros_like(ones))
    rewards[0, 1:3] = 0.0  # K = 1: N/K - 1 = 69999 does not fit float16
    with pytest.raises(OverflowError, match="does not fit in torch.float16"):
        maxrl(rewards)


@pytest.mark.parametrize("variant", ["algorithm1", "divide_by_k", "control_variate"])
@pytest.mark.parametrize("value", [2.0, -1.0, 3.0])
def test_maxrl_rejects_whole_numbers_outside_0_1(variant, value):
    with pytest.raises(ValueError, match=rf"got e.g. {value:g}"):
        maxrl(torch.tensor([[value, 0.0, 1.0]]), variant)


def test_loss_shapes_and_a_single_token():
    with pytest.raises(ValueError, match=r"expected logprobs \(P, N\) or \(P, N, L\)"):
        policy_gradient_loss(torch.zeros(2, 3, 4, 5), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"expected logprobs \(P, N\) or \(P, N, L\)"):
        policy_gradient_loss(torch.zeros(2, 4, 4), torch.zeros(2, 3))
    mask = torch.zeros(1, 2, 3)
    mask[0, 1, 2] = 1  # one token in the batch
    logprobs = torch.full((1, 2, 3), -2.0)
    loss = policy_gradient_loss(logprobs, torch.tensor([[1.0, 3.0]]), mask, "token_mean")
    assert loss.item() == 6.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_binary_rewards_give_the_plain_formulas_bit_for_bit(dtype):
    # The overflow-safe machinery must not change a single bit of the usual case.
    generator = torch.Generator().manual_seed(5)
    rewards = (torch.rand(64, 7, generator=generator) < 0.4).to(dtype)
    rewards[0] = 1.0  # a constant group of ones
    rewards[1, 0] = 1.0  # a group whose first sample succeeds
    n = rewards.shape[1]
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    std = ((centred * centred).sum(dim=1, keepdim=True) / (n - 1)).sqrt()
    assert torch.equal(grpo(rewards), centred / (std + 1e-6))
    assert torch.equal(grpo(rewards, scale="none"), centred)
    total = rewards.sum(dim=1, keepdim=True)
    assert torch.equal(rloo(rewards), rewards * (n / (n - 1)) - total / (n - 1))


def test_constant_real_groups_get_exactly_zero():
    # Plain float32 means are not exact (0.1 x 7 gave |A| = 0.007 and 123.456 x 1000 gave 0.94).
    for value in (0.1, 0.7, 123.456, -3e7):
        for n in (3, 7, 1000):
            rewards = torch.full((2, n), value)
            assert torch.equal(grpo(rewards), torch.zeros_like(rewards)), (value, n)
    rewards = torch.tensor([[0.1] * 7, [123.456] * 7, [-3e7] * 7])  # each row its own shift
    assert torch.equal(grpo(rewards), torch.zeros_like(rewards))


@pytest.mark.parametrize("name", ["rloo", "grpo", "dr_grpo"])
def test_sums_that_overflow_take_the_scaled_route(name):
    # The group sum 7e38 overflows float32; the advantages themselves fit.
    rewards = torch.tensor([[3e38, 3e38, 1e38], [1.0, 2.0, 4.0]])
    expected = ADVANTAGES[name](rewards.double())
    torch.testing.assert_close(ADVANTAGES[name](rewards).double(), expected, rtol=1e-6, atol=0)


def test_each_group_gets_its_own_scale():
    # One group near float32's limit sends the batch to the scaled route; a group of tiny
    # rewards beside it must keep its own units (one scale for the batch would flush it to 0).
    rewards = torch.tensor([[1e20, -1e20], [1e-30, 3e-30]])
    got = grpo(rewards, eps=1e-40)
    torch.testing.assert_close(
        got, torch.tensor([[0.7071, -0.7071], [-0.7071, 0.7071]]), rtol=1e-4, atol=0
    )


@pytest.mark.parametrize(
    "name, prefix",
    [
        ("reinforce", "reinforce"),
        ("rloo", "rloo"),
        ("grpo", "grpo"),
        ("dr_grpo", "grpo"),
        ("maxrl", r"maxrl\(variant='algorithm1'\)"),
        ("maxrl_divide_by_k", r"maxrl\(variant='divide_by_k'\)"),
        ("maxrl_control_variate", r"maxrl\(variant='control_variate'\)"),
    ],
)
def test_messages_start_with_the_estimator(name, prefix):
    with pytest.raises(ValueError, match=rf"^{prefix}: rewards must have shape \(P, N\)"):
        ADVANTAGES[name](torch.zeros(3))
    with pytest.raises(TypeError, match=rf"^{prefix}: rewards must be a torch.Tensor"):
        ADVANTAGES[name]([[0.0, 1.0]])
