r"""The configuration of one classification-as-sampling run, validated when it is built.

One :class:`ClassificationConfig` fixes everything a run depends on: the task (classes, input
dimension, label temperature, data sizes, ``task_seed``), the method and its number of sampled
labels ``N``, the optimizer and learning rate, the number of steps and the evaluation schedule,
and ``train_seed`` (the student's initial weights, the minibatch order and the sampled labels).
Every field is checked in ``__post_init__``; a wrong value raises ``TypeError`` or
``ValueError`` naming the field, the value and what was expected.

Derived in: chapter 8.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

#: Training methods: exact maximum likelihood and the sampled-label policy gradients.
METHODS: tuple[str, ...] = ("cross_entropy", "reinforce", "rloo", "grpo", "maxrl")
#: The fewest sampled labels per example each method accepts (cross-entropy samples none: 1).
MIN_SAMPLES: dict[str, int] = {
    "cross_entropy": 1,
    "reinforce": 1,
    "rloo": 2,
    "grpo": 2,
    "maxrl": 2,
}
#: The most sampled labels per example (the limit of :func:`companion.exact.group_weight`).
MAX_SAMPLES = 1 << 16
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
#: ``cpu``: seconds (tests, live slices); ``long``: the committed CPU results; ``gpu``: the
#: full sweep on one CUDA GPU; ``custom``: anything else.
SCALES: tuple[str, ...] = ("cpu", "long", "gpu", "custom")
#: Learning rate used when the config leaves it unset.
DEFAULT_LEARNING_RATES: dict[str, float] = {"sgd": 1.0, "adam": 0.01}
#: Display names used in labels and legends.
METHOD_NAMES: dict[str, str] = {
    "cross_entropy": "cross-entropy",
    "reinforce": "REINFORCE",
    "rloo": "RLOO",
    "grpo": "GRPO",
    "maxrl": "MaxRL",
}

_INT_MINIMUMS: dict[str, int] = {
    "num_classes": 2,
    "input_dim": 1,
    "train_size": 1,
    "validation_size": 1,
    "task_seed": 0,
    "batch_size": 1,
    "steps": 1,
    "eval_every": 1,
    "train_seed": 0,
}


def _fail(name: str, expected: str, value: object, error: type[Exception] = ValueError):
    raise error(f"ClassificationConfig.{name} must be {expected}, got {value!r}")


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(name, f"an int >= {minimum}", value, TypeError)
    if value < minimum:
        _fail(name, f"an int >= {minimum}", value)


def _check_positive_float(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(name, "a finite number > 0", value, TypeError)
    if not (math.isfinite(value) and value > 0):
        _fail(name, "a finite number > 0", value)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _fail(name, f"one of {choices}", value)


@dataclass(frozen=True)
class ClassificationConfig:
    r"""Everything that defines one run of the classification-as-sampling experiment.

    **Task.** Inputs :math:`x \sim \mathcal N(0, I_D)`, ``D = input_dim``; a teacher with one
    unit vector :math:`v_c` per class; labels drawn from
    :math:`\mathrm{softmax}(x^\top V / \tau)` with :math:`\tau` = ``label_temperature``, so
    the best achievable validation NLL is the teacher's conditional entropy. ``train_size``
    training and ``validation_size`` validation examples, all from ``task_seed``.

    **Student.** A linear softmax classifier ``D -> num_classes`` (weights and bias), PyTorch's
    default initialisation from ``train_seed``: its logits are small, so its pass rate starts
    near :math:`1/C`.

    **Training.** ``steps`` steps on minibatches of ``batch_size`` training examples drawn
    with replacement; ``method`` with ``num_samples`` sampled labels per example (1 for
    cross-entropy, which samples none); ``optimizer`` with ``learning_rate`` (``None``: the
    optimizer's default in :data:`DEFAULT_LEARNING_RATES`, stored resolved). Validation
    metrics at step 0, every ``eval_every`` steps and at the end: NLL, pass@1 and pass@k for
    ``k`` in ``pass_at_ks``.

    Build with the constructor or :func:`dataclasses.replace`; every field is validated.

    Derived in: chapter 8.
    """

    num_classes: int = 1000
    input_dim: int = 16
    label_temperature: float = 0.08
    train_size: int = 100_000
    validation_size: int = 2048
    task_seed: int = 0
    method: str = "cross_entropy"
    num_samples: int = 1
    optimizer: str = "sgd"
    learning_rate: float | None = None
    batch_size: int = 128
    steps: int = 2000
    eval_every: int = 100
    train_seed: int = 0
    pass_at_ks: tuple[int, ...] = (16, 128, 1024)
    scale: str = "custom"

    def __post_init__(self) -> None:
        for name, minimum in _INT_MINIMUMS.items():
            _check_int(name, getattr(self, name), minimum)
        _check_positive_float("label_temperature", self.label_temperature)
        _check_choice("method", self.method, METHODS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("scale", self.scale, SCALES)
        self._check_num_samples()
        if self.learning_rate is None:
            object.__setattr__(self, "learning_rate", DEFAULT_LEARNING_RATES[self.optimizer])
        _check_positive_float("learning_rate", self.learning_rate)
        object.__setattr__(self, "learning_rate", float(self.learning_rate))
        if not isinstance(self.pass_at_ks, tuple) or not self.pass_at_ks:
            _fail("pass_at_ks", "a non-empty tuple of ints >= 1", self.pass_at_ks, TypeError)
        for k in self.pass_at_ks:
            _check_int("pass_at_ks[...]", k, 1)
        if len(set(self.pass_at_ks)) != len(self.pass_at_ks) or 1 in self.pass_at_ks:
            _fail("pass_at_ks", "distinct values >= 2 (pass@1 is always reported)", self.pass_at_ks)

    def _check_num_samples(self) -> None:
        n = self.num_samples
        _check_int("num_samples", n, 1)
        if self.method == "cross_entropy" and n != 1:
            _fail("num_samples", "1 for cross_entropy (it samples no labels)", n)
        minimum = MIN_SAMPLES[self.method]
        if n < minimum:
            _fail("num_samples", f">= {minimum} for {self.method} (N = 1 is not enough)", n)
        if n > MAX_SAMPLES:
            _fail("num_samples", f"<= {MAX_SAMPLES}", n)

    @property
    def label(self) -> str:
        """Human-readable name of the run's method, e.g. ``"MaxRL N=128"``."""
        return run_label(self.method, self.num_samples)

    def to_dict(self) -> dict:
        """Plain dict for JSON (tuples become lists)."""
        values = dataclasses.asdict(self)
        values["pass_at_ks"] = list(self.pass_at_ks)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> ClassificationConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"ClassificationConfig: unknown fields {unknown}; known: {sorted(known)}"
            )
        values = dict(values)
        if isinstance(values.get("pass_at_ks"), list):
            values["pass_at_ks"] = tuple(values["pass_at_ks"])
        return cls(**values)


def run_label(method: str, num_samples: int) -> str:
    """``"cross-entropy"`` or e.g. ``"MaxRL N=1024"``."""
    if method == "cross_entropy":
        return METHOD_NAMES[method]
    return f"{METHOD_NAMES[method]} N={num_samples}"


#: The per-run settings shared by the ``long`` and ``gpu`` scales: C = 1000 classes, a
#: 16-dimensional input, labels at temperature 0.08 (the teacher's most likely label has
#: probability about 0.7 on average), 2000 steps of 128 examples.
REGIME = ClassificationConfig(scale="long")

#: The ``cpu`` scale: the same task, shorter (tests and quick checks; seconds per run).
SMALL = dataclasses.replace(REGIME, steps=200, eval_every=50, validation_size=512, scale="cpu")
