"""Tests of companion.classification: the task, the rollouts, the trainer and its outputs."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion import classification as cls
from companion.objectives import weight

TINY = cls.ClassificationConfig(
    input_dim=8,
    teacher_hidden=16,
    num_classes=100,
    student_hidden=32,
    train_size=512,
    validation_size=200,
    batch_size=32,
    steps=12,
    eval_every=5,
    scale="custom",
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------------------
# The task
# ------------------------------------------------------------------------------------------


def test_task_is_determined_by_the_seed():
    first, second = cls.make_task(TINY), cls.make_task(TINY)
    other = cls.make_task(dataclasses.replace(TINY, seed=1))
    for name in ("train_inputs", "train_labels", "validation_inputs", "validation_labels"):
        assert torch.equal(getattr(first, name), getattr(second, name))
    assert not torch.equal(first.train_labels, other.train_labels)


def test_task_shapes_and_label_range():
    task = cls.make_task(TINY)
    assert task.train_inputs.shape == (TINY.train_size, TINY.input_dim)
    assert task.train_labels.shape == (TINY.train_size,)
    assert task.validation_inputs.shape == (TINY.validation_size, TINY.input_dim)
    assert task.train_labels.dtype == torch.int64
    assert 0 <= int(task.train_labels.min()) and int(task.train_labels.max()) < TINY.num_classes


def test_classes_are_balanced_and_initial_pass_rate_is_about_one_over_c():
    config = cls.ClassificationConfig.cpu()
    task = cls.make_task(config)
    counts = torch.bincount(task.train_labels, minlength=config.num_classes).double()
    frequency = counts / counts.sum()
    effective_classes = math.exp(-(frequency * frequency.log()).sum())
    assert effective_classes > 0.9 * config.num_classes
    student = cls.make_student(config)
    pass_rate = cls.true_label_probability(student, task.validation_inputs, task.validation_labels)
    assert 0.5 / config.num_classes < float(pass_rate.mean()) < 2.0 / config.num_classes


# ------------------------------------------------------------------------------------------
# Rollouts and rewards
# ------------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 9), st.integers(2, 7), st.integers(0, 10_000))
def test_label_rewards_match_a_loop(num_prompts, num_samples, num_classes, seed):
    generator = torch.Generator().manual_seed(seed)
    samples = torch.randint(num_classes, (num_prompts, num_samples), generator=generator)
    labels = torch.randint(num_classes, (num_prompts,), generator=generator)
    rewards = cls.label_rewards(samples, labels)
    assert rewards.shape == (num_prompts, num_samples) and rewards.dtype == torch.float32
    for x in range(num_prompts):
        for i in range(num_samples):
            assert rewards[x, i] == (1.0 if samples[x, i] == labels[x] else 0.0)


def test_sample_labels_shape_and_frequencies():
    logits = torch.tensor([[0.0, 1.0, 2.0], [2.0, 0.0, -1.0]])
    generator = torch.Generator().manual_seed(0)
    samples = cls.sample_labels(logits, 20_000, generator)
    assert samples.shape == (2, 20_000) and samples.dtype == torch.int64
    frequency = torch.stack([torch.bincount(row, minlength=3) for row in samples]) / 20_000
    assert torch.allclose(frequency, torch.softmax(logits, 1), atol=0.015)


def test_sample_labels_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        cls.sample_labels(torch.zeros(3), 4)
    with pytest.raises(ValueError, match="num_samples"):
        cls.sample_labels(torch.zeros(2, 3), 0)


def test_maxrl_step_gradient_is_true_label_minus_sample_frequency():
    """Every success is the same label, so Algorithm 1's estimate is e_y - f (K >= 1)."""
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(3)).requires_grad_()
    labels = torch.tensor([0, 1, 2, 3])
    output = cls.step_loss(logits, labels, "maxrl", 64, torch.Generator().manual_seed(4))
    (gradient,) = torch.autograd.grad(output.loss, logits)
    assert bool((output.rewards.sum(1) > 0).all())
    samples_frequency = torch.zeros(4, 5)
    for x in range(4):
        for z in output.samples[x].tolist():
            samples_frequency[x, z] += 1.0 / 64
    expected = torch.nn.functional.one_hot(labels, 5).float() - samples_frequency
    # The loss averages over the P = 4 examples; the surrogate loss is minus the objective.
    assert torch.allclose(-4 * gradient, expected, atol=1e-6)


def test_all_fail_groups_give_exactly_zero_gradient_under_algorithm1():
    config = TINY
    student = cls.make_student(config)
    inputs = torch.randn(16, config.input_dim, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(16) % config.num_classes
    # A huge negative bias on each true label makes its probability exactly 0 in float32.
    with torch.no_grad():
        bias = torch.zeros(16, config.num_classes)
        bias[torch.arange(16), labels] = -1e4
    logits = student(inputs) + bias
    output = cls.step_loss(logits, labels, "maxrl", 32, torch.Generator().manual_seed(1))
    assert float(output.rewards.sum()) == 0.0
    assert float(cls.all_fail_advantage_total(output.rewards, output.advantages)) == 0.0
    output.loss.backward()
    for parameter in student.parameters():
        assert torch.equal(parameter.grad, torch.zeros_like(parameter))


def test_cross_entropy_step_is_minus_mean_log_probability():
    logits = torch.randn(6, 100, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(6) * 7
    output = cls.step_loss(logits, labels, "cross_entropy")
    expected = -sum(torch.log_softmax(logits[x], 0)[labels[x]] for x in range(6)) / 6
    assert torch.allclose(output.loss, expected)
    assert output.samples is None and output.rewards is None and output.advantages is None


# ------------------------------------------------------------------------------------------
# Expected gradient weights and norms
# ------------------------------------------------------------------------------------------


def _grpo_weight_loop(p: float, n: int, eps: float = 1e-6) -> float:
    """c_N(p) = E[A_1 | r_1 = 1] - E[A_1 | r_1 = 0] for GRPO, by a plain loop."""
    total = 0.0
    for j in range(n):
        pmf = math.comb(n - 1, j) * p**j * (1 - p) ** (n - 1 - j)
        advantages = []
        for first in (1.0, 0.0):
            rewards = [first] + [1.0] * j + [0.0] * (n - 1 - j)
            mean = sum(rewards) / n
            std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (n - 1))
            advantages.append((first - mean) / (std + eps))
        total += pmf * (advantages[0] - advantages[1])
    return total


@pytest.mark.parametrize("n", [2, 5, 64, 1024])
def test_expected_weight_matches_the_closed_forms(n):
    p = torch.tensor([1e-4, 0.01, 0.2, 0.5, 0.9, 1.0], dtype=torch.float64)
    maxrl = cls.expected_weight("maxrl", n, p)
    assert torch.allclose(maxrl, weight("maxrl", p, n - 1), rtol=1e-9)
    for method in ("reinforce", "rloo"):
        assert torch.allclose(cls.expected_weight(method, n, p), torch.ones_like(p), rtol=1e-9)
    assert torch.allclose(cls.expected_weight("cross_entropy", None, p), 1 / p)
    if n <= 64:
        grpo = cls.expected_weight("grpo", n, p)
        loop = torch.tensor([_grpo_weight_loop(float(q), n) for q in p], dtype=torch.float64)
        assert torch.allclose(grpo, loop, rtol=1e-9, atol=1e-12)


def test_expected_gradient_norm_of_cross_entropy_matches_autograd():
    logits = torch.randn(3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 3, 6])
    pass_rate, norm = cls.expected_gradient_norms(logits, labels, "cross_entropy", None)
    for x in range(3):
        row = logits[x].clone().requires_grad_()
        (gradient,) = torch.autograd.grad(torch.log_softmax(row, 0)[labels[x]], row)
        assert math.isclose(float(norm[x]), float(gradient.norm()), rel_tol=1e-12)
        assert math.isclose(float(pass_rate[x]), float(torch.softmax(row.detach(), 0)[labels[x]]))
    _, reinforce = cls.expected_gradient_norms(logits, labels, "reinforce", 8)
    assert torch.allclose(reinforce, pass_rate * norm)


def test_binned_mean_matches_a_loop():
    generator = torch.Generator().manual_seed(0)
    pass_rate = torch.rand(500, generator=generator, dtype=torch.float64) ** 4
    values = torch.rand(500, generator=generator, dtype=torch.float64)
    edges = cls.GRADIENT_BIN_EDGES
    means, counts = cls.binned_mean(pass_rate, values, edges)
    for b in range(len(edges) - 1):
        low = -math.inf if b == 0 else float(edges[b])
        high = math.inf if b == len(edges) - 2 else float(edges[b + 1])
        members = [
            float(v) for q, v in zip(pass_rate, values, strict=True) if low <= float(q) < high
        ]
        assert counts[b] == len(members)
        if members:
            assert math.isclose(means[b], sum(members) / len(members), rel_tol=1e-12)
        else:
            assert means[b] is None


# ------------------------------------------------------------------------------------------
# Training, results and the command line
# ------------------------------------------------------------------------------------------


def test_tiny_run_is_finite_and_reproducible():
    first, _ = cls.train(TINY, "maxrl", 8, device="cpu", progress=False)
    second, _ = cls.train(TINY, "maxrl", 8, device="cpu", progress=False)
    assert first.steps == [0, 5, 10, 12]
    assert first.metrics == second.metrics
    for values in first.metrics.values():
        assert all(math.isfinite(v) and 0 <= v <= 1 for v in values)
    assert first.all_fail_advantage_total == 0.0
    assert first.rollouts_per_second > 0


def test_methods_share_the_initial_model():
    runs = [cls.train(TINY, m, 4, device="cpu", progress=False)[0] for m in ("reinforce", "grpo")]
    assert runs[0].metrics["pass@1"][0] == runs[1].metrics["pass@1"][0]


def test_non_finite_training_raises_a_clear_error():
    task = cls.make_task(TINY)
    poisoned = dataclasses.replace(task, train_inputs=torch.full_like(task.train_inputs, math.nan))
    with pytest.raises(cls.NonFiniteTrainingError, match="NaN"):
        cls.train(TINY, "cross_entropy", device="cpu", task=poisoned, progress=False)


def test_experiment_writes_json_and_figures(tmp_path):
    runs = [("cross_entropy", None), ("maxrl", 4), ("reinforce", 4)]
    experiment = cls.run_experiment(TINY, runs, device="cpu", out=tmp_path, progress=False)
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["gradient_norm.png", "pass_at_1.png", "pass_at_k.png", "results.json"]
    for name in names[:3]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / "results.json").read_text())
    assert [run["label"] for run in data["runs"]] == ["cross-entropy", "MaxRL N=4", "REINFORCE N=4"]
    assert data["config"]["steps"] == TINY.steps
    assert data["gradient_reference"] == "cross-entropy"
    assert experiment.run("maxrl", 4).final() == data["runs"][1]["metrics"]["pass@1"][-1]


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"num_classes": 1}, ValueError),
        ({"steps": 0}, ValueError),
        ({"steps": 2.5}, TypeError),
        ({"batch_size": 10_000}, ValueError),
        ({"optimizer": "rmsprop"}, ValueError),
        ({"learning_rate": -0.1}, ValueError),
        ({"learning_rate": math.nan}, ValueError),
        ({"pass_at_ks": [16]}, TypeError),
        ({"pass_at_ks": (0,)}, ValueError),
        ({"scale": "tpu"}, ValueError),
    ],
)
def test_bad_config_raises(overrides, error):
    with pytest.raises(error):
        dataclasses.replace(TINY, **overrides)


@pytest.mark.parametrize(
    ("method", "n", "error"),
    [
        ("ppo", 4, ValueError),
        ("maxrl", 1, ValueError),
        ("grpo", 1, ValueError),
        ("rloo", None, TypeError),
    ],
)
def test_bad_method_or_sample_count_raises(method, n, error):
    with pytest.raises(error):
        cls.train(TINY, method, n, device="cpu", progress=False)


def test_scales():
    assert cls.ClassificationConfig.for_device("cpu") == cls.ClassificationConfig.cpu()
    assert cls.ClassificationConfig.for_device("cuda") == cls.ClassificationConfig.gpu()
    assert cls.ClassificationConfig.cpu().num_classes >= 100
    assert cls.ClassificationConfig.gpu().batch_size > cls.ClassificationConfig.cpu().batch_size
    assert (
        cls.ClassificationConfig.gpu().validation_size
        > cls.ClassificationConfig.cpu().validation_size
    )
    assert cls.ClassificationConfig.cpu(optimizer="adam").lr == 1e-3


def test_cli_help():
    completed = subprocess.run(
        [sys.executable, "-m", "companion.classification", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    for option in ("--scale", "--methods", "--n", "--steps", "--seed", "--out"):
        assert option in completed.stdout


def test_cli_rejects_unknown_method(capsys):
    with pytest.raises(SystemExit):
        cls.main(["--methods", "ppo"])
    assert "unknown methods" in capsys.readouterr().err
