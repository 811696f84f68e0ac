"""Tests of companion.classification.task: teacher, data, student, sampled labels, metrics."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.classification.config import SMALL
from companion.classification.task import (
    STREAMS,
    derive_seed,
    label_rewards,
    log_pass_rates,
    make_student,
    make_task,
    metrics_from_log_pass_rates,
    per_example_pass_at_k,
    sample_labels,
    teacher_metrics,
    teacher_probabilities,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dataclasses.replace(
    SMALL, num_classes=40, input_dim=4, train_size=600, validation_size=200, scale="custom"
)


def test_streams_get_distinct_seeds():
    seeds = {derive_seed(s, stream) for s in range(4) for stream in STREAMS}
    assert len(seeds) == 4 * len(STREAMS)
    assert all(0 <= s < 2**63 for s in seeds)
    with pytest.raises(ValueError, match="unknown stream"):
        derive_seed(0, "labels")


def test_task_depends_on_the_task_seed_only():
    first, again = make_task(TINY), make_task(dataclasses.replace(TINY, train_seed=7))
    other = make_task(dataclasses.replace(TINY, task_seed=1))
    for name in (
        "teacher",
        "train_inputs",
        "train_labels",
        "validation_inputs",
        "validation_labels",
    ):
        assert torch.equal(getattr(first, name), getattr(again, name))
    assert not torch.equal(first.train_labels, other.train_labels)
    assert first.train_inputs.shape == (600, 4) and first.validation_labels.shape == (200,)
    assert first.train_labels.dtype == torch.int64 and first.num_classes == 40
    assert torch.allclose(first.teacher.norm(dim=0), torch.ones(40))


def _softmax_loop(row: list[float]) -> list[float]:
    top = max(row)
    weights = [math.exp(v - top) for v in row]
    return [w / sum(weights) for w in weights]


@pytest.mark.parametrize("temperature", [0.25, 0.5, 2.0])
def test_teacher_probabilities_are_softmax_of_scores_over_temperature(temperature):
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    teacher = torch.randn(3, 7, generator=generator, dtype=torch.float64)
    probs = teacher_probabilities(inputs, teacher, temperature)
    for x in range(5):
        scores = [
            sum(inputs[x, d] * teacher[d, c] for d in range(3)) / temperature for c in range(7)
        ]
        assert probs[x].tolist() == pytest.approx(_softmax_loop([float(s) for s in scores]))
    assert not torch.allclose(probs, teacher_probabilities(inputs, teacher, 1.0))


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_labels_are_drawn_from_the_tempered_teacher(temperature):
    """The label frequencies of one input repeated many times match softmax(x V / T)."""
    config = dataclasses.replace(TINY, num_classes=5, label_temperature=temperature)
    task = make_task(config)
    x = task.train_inputs[:1]
    expected = teacher_probabilities(x, task.teacher, temperature)[0]
    # Draw labels the way make_task does, for one input repeated 40,000 times.
    generator = torch.Generator().manual_seed(1)
    probs = teacher_probabilities(x.expand(40_000, -1), task.teacher, temperature)
    labels = torch.multinomial(probs, 1, generator=generator)[:, 0]
    frequency = torch.bincount(labels, minlength=5) / 40_000
    assert torch.allclose(frequency, expected, atol=0.01)
    # And over the whole training set, labels agree with the teacher's probabilities on average.
    all_probs = teacher_probabilities(task.train_inputs, task.teacher, temperature)
    assert abs(float(all_probs.gather(1, task.train_labels[:, None]).mean()) -
               float((all_probs**2).sum(1).mean())) < 0.03  # fmt: skip


def test_student_depends_on_the_train_seed_only_and_starts_near_one_over_c():
    first = make_student(TINY)
    same = make_student(dataclasses.replace(TINY, task_seed=3))
    other = make_student(dataclasses.replace(TINY, train_seed=1))
    assert torch.equal(first.weight, same.weight) and torch.equal(first.bias, same.bias)
    assert not torch.equal(first.weight, other.weight)
    config = dataclasses.replace(SMALL, train_size=10, validation_size=4000)
    task = make_task(config)
    with torch.no_grad():
        p = log_pass_rates(
            make_student(config)(task.validation_inputs), task.validation_labels
        ).exp()
    assert 0.7e-3 < float(p.mean()) < 1.4e-3  # C = 1000


def test_sample_labels_frequencies_and_errors():
    logits = torch.tensor([[0.0, 1.0, 2.0], [2.0, 0.0, -1.0]])
    samples = sample_labels(logits, 20_000, torch.Generator().manual_seed(0))
    assert samples.shape == (2, 20_000) and samples.dtype == torch.int64
    frequency = torch.stack([torch.bincount(row, minlength=3) for row in samples]) / 20_000
    assert torch.allclose(frequency, torch.softmax(logits, 1), atol=0.015)
    with pytest.raises(ValueError, match="shape"):
        sample_labels(torch.zeros(3), 4)
    with pytest.raises(ValueError, match="num_samples"):
        sample_labels(torch.zeros(2, 3), 0)


def test_all_fail_fraction_of_a_uniform_student_is_one_minus_one_over_c_to_the_n():
    """With p = 1/C exactly, a group of N labels has no success with probability (1-1/C)^N."""
    num_classes, n, groups = 50, 20, 20_000
    logits = torch.zeros(groups, num_classes)
    labels = torch.randint(num_classes, (groups,), generator=torch.Generator().manual_seed(0))
    rewards = label_rewards(sample_labels(logits, n, torch.Generator().manual_seed(1)), labels)
    fraction = float((rewards.sum(1) == 0).float().mean())
    expected = (1 - 1 / num_classes) ** n
    assert abs(fraction - expected) < 4 * math.sqrt(expected * (1 - expected) / groups)
    assert abs(fraction - (1 - 1 / num_classes) ** (n + 3)) > 0.02  # the test can tell N apart


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 9), st.integers(2, 7), st.integers(0, 10_000))
def test_label_rewards_match_a_loop(num_prompts, num_samples, num_classes, seed):
    generator = torch.Generator().manual_seed(seed)
    samples = torch.randint(num_classes, (num_prompts, num_samples), generator=generator)
    labels = torch.randint(num_classes, (num_prompts,), generator=generator)
    rewards = label_rewards(samples, labels)
    assert rewards.shape == (num_prompts, num_samples) and rewards.dtype == torch.float32
    for x in range(num_prompts):
        for i in range(num_samples):
            assert rewards[x, i] == (1.0 if samples[x, i] == labels[x] else 0.0)
    with pytest.raises(ValueError, match="expected samples"):
        label_rewards(samples, labels[:0])


def test_per_example_pass_at_k_and_metrics_match_a_loop():
    """Examples with very different pass rates: each gets its own 1 - (1 - p)^k."""
    logits = torch.tensor(
        [[9.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [-6.0, 1.0, 2.0, 0.0], [0.0, 3.0, -2.0, 1.0]],
        dtype=torch.float64,
    )
    labels = torch.tensor([0, 1, 0, 2])
    log_p = log_pass_rates(logits, labels)
    p = [float(torch.softmax(logits[x], 0)[labels[x]]) for x in range(4)]
    assert log_p.exp().tolist() == pytest.approx(p, rel=1e-12)
    assert len({round(v, 6) for v in p}) == 4
    for k in (2, 16, 128):
        loop = [1 - (1 - q) ** k for q in p]
        assert per_example_pass_at_k(log_p, k).tolist() == pytest.approx(loop, rel=1e-10)
    metrics = metrics_from_log_pass_rates(log_p, (16, 128))
    assert metrics["nll"] == pytest.approx(-sum(math.log(q) for q in p) / 4, rel=1e-12)
    assert metrics["pass@1"] == pytest.approx(sum(p) / 4, rel=1e-12)
    assert metrics["pass@16"] == pytest.approx(sum(1 - (1 - q) ** 16 for q in p) / 4, rel=1e-12)
    assert list(metrics) == ["nll", "pass@1", "pass@16", "pass@128"]


def test_teacher_metrics_nll_is_the_mean_log_loss_of_the_teacher():
    task = make_task(TINY)
    metrics = teacher_metrics(task, (16,))
    probs = teacher_probabilities(task.validation_inputs.double(), task.teacher.double(), 0.08)
    expected = -probs.gather(1, task.validation_labels[:, None]).log().mean()
    assert metrics["nll"] == pytest.approx(float(expected), rel=1e-9)
    assert 0 < metrics["pass@1"] < metrics["pass@16"] <= 1
