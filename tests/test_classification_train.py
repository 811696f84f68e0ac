"""Tests of companion.classification.train: the step of each method and the training loop."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from companion.classification.config import SMALL
from companion.classification.task import log_pass_rates, make_student, make_task
from companion.classification.train import (
    NonFiniteTrainingError,
    RunResult,
    all_fail_advantage_total,
    decode_floats,
    encode_floats,
    step_loss,
    train,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dataclasses.replace(
    SMALL,
    num_classes=30,
    input_dim=4,
    train_size=400,
    validation_size=100,
    batch_size=16,
    steps=12,
    eval_every=5,
    pass_at_ks=(4, 16),
    scale="custom",
)


def test_maxrl_step_gradient_is_true_label_minus_sample_frequency():
    """Every success is the same label, so Algorithm 1's estimate is e_y - f (K >= 1)."""
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(3)).requires_grad_()
    labels = torch.tensor([0, 1, 2, 3])
    output = step_loss(logits, labels, "maxrl", 64, torch.Generator().manual_seed(4))
    (gradient,) = torch.autograd.grad(output.loss, logits)
    assert bool((output.rewards.sum(1) > 0).all())
    frequency = torch.zeros(4, 5)
    for x in range(4):
        for z in output.samples[x].tolist():
            frequency[x, z] += 1.0 / 64
    expected = torch.nn.functional.one_hot(labels, 5).float() - frequency
    assert torch.allclose(-4 * gradient, expected, atol=1e-6)  # loss = -mean over P = 4


def test_all_fail_groups_give_exactly_zero_gradient_under_algorithm1():
    logits = torch.zeros(16, TINY.num_classes)
    labels = torch.arange(16)
    logits[torch.arange(16), labels] = -1e4  # the true label has probability 0 in float32
    logits.requires_grad_()
    output = step_loss(logits, labels, "maxrl", 32, torch.Generator().manual_seed(1))
    assert float(output.rewards.sum()) == 0.0
    assert float(all_fail_advantage_total(output.rewards, output.advantages)) == 0.0
    (gradient,) = torch.autograd.grad(output.loss, logits)
    assert torch.equal(gradient, torch.zeros_like(gradient))


def test_cross_entropy_step_is_minus_mean_log_probability():
    logits = torch.randn(6, 100, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(6) * 7
    output = step_loss(logits, labels, "cross_entropy")
    expected = -sum(torch.log_softmax(logits[x], 0)[labels[x]] for x in range(6)) / 6
    assert torch.allclose(output.loss, expected)
    assert output.rewards is None and output.advantages is None
    with pytest.raises(ValueError, match="unknown method"):
        step_loss(logits, labels, "ppo", 4)


def test_run_is_reproducible_and_a_shorter_run_is_a_prefix():
    config = dataclasses.replace(TINY, method="maxrl", num_samples=8, learning_rate=3.0)
    first, _ = train(config)
    second, _ = train(config)
    short, _ = train(dataclasses.replace(config, steps=7))
    assert first.steps == [0, 5, 10, 12] and short.steps == [0, 5, 7]
    assert first.metrics == second.metrics
    assert first.final_log_pass_rate == second.final_log_pass_rate
    for name, values in short.metrics.items():
        assert values[:2] == first.metrics[name][:2]
    assert first.metrics["pass@1"][0] != first.metrics["pass@1"][-1]  # it trained
    for values in first.metrics.values():
        assert all(math.isfinite(v) for v in values)
    assert first.all_fail_advantage_total == 0.0 and first.rollouts_per_second > 0


def test_history_fields_and_final_pass_rates():
    config = dataclasses.replace(TINY, method="grpo", num_samples=4)
    result, model = train(config)
    task = make_task(config)
    with torch.no_grad():
        log_p = log_pass_rates(model(task.validation_inputs), task.validation_labels)
    assert decode_floats(result.final_log_pass_rate) == pytest.approx(log_p.numpy(), rel=1e-6)
    assert result.final("nll") == pytest.approx(float(-log_p.mean()), rel=1e-12)
    assert list(result.metrics) == ["nll", "pass@1", "pass@4", "pass@16"]
    assert result.train_pass_rate[0] is None and result.all_fail_fraction[0] is None
    assert all(0 <= f <= 1 for f in result.all_fail_fraction[1:])
    ce, _ = train(dataclasses.replace(TINY, method="cross_entropy", num_samples=1))
    assert ce.all_fail_fraction == [None] * len(ce.steps)
    assert ce.metrics["pass@1"][0] == result.metrics["pass@1"][0]  # same initial student
    assert RunResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_recorded_all_fail_fraction_matches_the_initial_pass_rates():
    """At a negligible learning rate the student stays at its start, where a group of N labels
    fails entirely with probability mean((1 - p)^N), close to (1 - 1/C)^N since p ~ 1/C."""
    config = dataclasses.replace(
        SMALL, method="maxrl", num_samples=64, learning_rate=1e-9, steps=60, eval_every=60,
        train_size=2000, validation_size=10,
    )  # fmt: skip
    result, _ = train(config)
    task = make_task(config)
    with torch.no_grad():
        p = log_pass_rates(make_student(config)(task.train_inputs), task.train_labels).exp()
    expected = float(((1 - p) ** 64).mean())
    groups = config.steps * config.batch_size
    assert abs(result.all_fail_fraction[1] - expected) < 4 * math.sqrt(expected / groups)
    assert abs(expected - (1 - 1 / 1000) ** 64) < 0.01


def test_non_finite_training_raises_a_clear_error():
    task = make_task(TINY)
    poisoned = dataclasses.replace(task, train_inputs=torch.full_like(task.train_inputs, math.nan))
    with pytest.raises(NonFiniteTrainingError, match="NaN"):
        train(TINY, task=poisoned)
    # A sampled method meets NaN probabilities in the sampler first: the same clear error.
    config = dataclasses.replace(TINY, method="rloo", num_samples=4)
    with pytest.raises(NonFiniteTrainingError, match="NaN"):
        train(config, task=poisoned)


def test_task_for_another_config_is_refused():
    with pytest.raises(ValueError, match="another config"):
        train(TINY, task=make_task(dataclasses.replace(TINY, num_classes=31)))


def test_float_encoding_round_trips():
    values = torch.tensor([-1e-8, -0.5, -30.0, 0.0], dtype=torch.float64)
    assert decode_floats(encode_floats(values)).tolist() == pytest.approx(values.tolist(), rel=1e-7)


def test_every_training_stream_comes_from_the_train_seed(monkeypatch):
    """The task seed makes the data; the training seed makes the init, batches and samples."""
    import companion.classification.task as task_module
    import companion.classification.train as train_module

    calls, original = [], task_module.generator

    def recording(seed, stream, device="cpu"):
        calls.append((seed, stream))
        return original(seed, stream, device)

    monkeypatch.setattr(train_module, "generator", recording)
    monkeypatch.setattr(task_module, "generator", recording)
    config = dataclasses.replace(TINY, method="rloo", num_samples=2, task_seed=5, train_seed=7)
    train(config, task=make_task(config))
    assert sorted(set(calls)) == [
        (5, "data"),
        (5, "teacher"),
        (7, "batches"),
        (7, "init"),
        (7, "samples"),
    ]


def test_per_example_values_kept_where_asked():
    config = dataclasses.replace(TINY, method="maxrl", num_samples=4)
    full, _ = train(config, keep_examples_at=(5, 7))
    short, _ = train(dataclasses.replace(config, steps=5))
    assert list(full.example_log_pass_rates) == ["5"]  # step 7 is never evaluated
    assert full.example_log_pass_rates["5"] == short.final_log_pass_rate
