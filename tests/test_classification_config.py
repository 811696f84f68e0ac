"""Tests of companion.classification.config: every field validated when the config is built."""

from __future__ import annotations

import dataclasses
import math

import pytest

from companion.classification.config import (
    DEFAULT_LEARNING_RATES,
    MAX_SAMPLES,
    METHODS,
    MIN_SAMPLES,
    REGIME,
    SMALL,
    ClassificationConfig,
    run_label,
)


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"num_classes": 1}, ValueError, "num_classes"),
        ({"num_classes": 2.0}, TypeError, "num_classes"),
        ({"input_dim": 0}, ValueError, "input_dim"),
        ({"label_temperature": 0.0}, ValueError, "label_temperature"),
        ({"label_temperature": math.inf}, ValueError, "label_temperature"),
        ({"label_temperature": math.nan}, ValueError, "label_temperature"),
        ({"label_temperature": "1"}, TypeError, "label_temperature"),
        ({"train_size": 0}, ValueError, "train_size"),
        ({"validation_size": 0}, ValueError, "validation_size"),
        ({"task_seed": -1}, ValueError, "task_seed"),
        ({"train_seed": -1}, ValueError, "train_seed"),
        ({"train_seed": True}, TypeError, "train_seed"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"steps": 0}, ValueError, "steps"),
        ({"steps": 2.5}, TypeError, "steps"),
        ({"eval_every": 0}, ValueError, "eval_every"),
        ({"method": "ppo"}, ValueError, "method"),
        ({"optimizer": "rmsprop"}, ValueError, "optimizer"),
        ({"learning_rate": 0.0}, ValueError, "learning_rate"),
        ({"learning_rate": -0.1}, ValueError, "learning_rate"),
        ({"learning_rate": math.nan}, ValueError, "learning_rate"),
        ({"learning_rate": math.inf}, ValueError, "learning_rate"),
        ({"learning_rate": "0.1"}, TypeError, "learning_rate"),
        ({"pass_at_ks": [16]}, TypeError, "pass_at_ks"),
        ({"pass_at_ks": ()}, TypeError, "pass_at_ks"),
        ({"pass_at_ks": (0,)}, ValueError, "pass_at_ks"),
        ({"pass_at_ks": (1, 16)}, ValueError, "pass_at_ks"),
        ({"pass_at_ks": (16, 16)}, ValueError, "pass_at_ks"),
        ({"scale": "tpu"}, ValueError, "scale"),
        ({"method": "cross_entropy", "num_samples": 4}, ValueError, "num_samples"),
        ({"method": "maxrl", "num_samples": 1}, ValueError, "num_samples"),
        ({"method": "maxrl", "num_samples": MAX_SAMPLES + 1}, ValueError, "num_samples"),
        ({"method": "reinforce", "num_samples": 0}, ValueError, "num_samples"),
    ],
)
def test_bad_values_raise_naming_the_field(overrides, error, match):
    with pytest.raises(error, match=match):
        dataclasses.replace(SMALL, **overrides)


@pytest.mark.parametrize("method", METHODS)
def test_each_method_accepts_its_minimum_and_refuses_one_less(method):
    n = MIN_SAMPLES[method]
    assert ClassificationConfig(method=method, num_samples=n).num_samples == n
    if n > 1:
        with pytest.raises(ValueError, match=f">= {n}"):
            ClassificationConfig(method=method, num_samples=n - 1)


def test_learning_rate_default_is_resolved_and_stored():
    for optimizer, rate in DEFAULT_LEARNING_RATES.items():
        config = ClassificationConfig(optimizer=optimizer)
        assert config.learning_rate == rate and isinstance(config.learning_rate, float)
    assert ClassificationConfig(learning_rate=3).learning_rate == 3.0


def test_round_trip_through_a_dict():
    config = dataclasses.replace(REGIME, method="grpo", num_samples=8, learning_rate=0.3)
    assert ClassificationConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown fields"):
        ClassificationConfig.from_dict({**config.to_dict(), "temperature": 1.0})


def test_regime_is_the_papers():
    """C = 1000 classes; the scales share the task and differ in length only."""
    assert REGIME.num_classes == 1000 and SMALL.num_classes == 1000
    for name in ("input_dim", "label_temperature", "train_size", "batch_size", "pass_at_ks"):
        assert getattr(REGIME, name) == getattr(SMALL, name)
    assert SMALL.steps < REGIME.steps


def test_run_label():
    assert run_label("cross_entropy", 1) == "cross-entropy"
    assert run_label("maxrl", 1024) == "MaxRL N=1024"
    assert ClassificationConfig(method="rloo", num_samples=4).label == "RLOO N=4"
