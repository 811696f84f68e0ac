r"""Configuration of the maze experiment: one validated dataclass and three named scales.

* ``cpu``: what the chapter runs live on 2 CPU cores, a slice of ``long`` (seed 0, the first
  RL steps, the first block of held-out mazes), so it reproduces numbers of the committed
  ``long`` results exactly (on a CPU with one torch thread).
* ``long``: the committed CPU results (five seeds, 256 held-out mazes), about an hour per
  command on one core.
* ``gpu``: one CUDA GPU, 4x4-cell mazes, a 0.8M-parameter model, minutes.

Each scale has presets for the three experiments: ``compare`` (every method, several seeds),
``sweep`` (the number of samples N varies) and ``fixed`` (RL on a small set of ``rl_pool``
training mazes repeated for many epochs, held-out pass@k tracked during training; the SFT warm
start is the same as in ``compare``).

Derived in: chapter 9.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

import torch

from companion.estimators import ADVANTAGES
from companion.maze.env import VOCAB_SIZE, max_answer_length, prompt_length
from companion.maze.model import MazeTransformer, ModelConfig

METHODS: tuple[str, ...] = ("reinforce", "rloo", "grpo", "maxrl")
SCALES: tuple[str, ...] = ("cpu", "long", "gpu")
EXPERIMENTS: tuple[str, ...] = ("compare", "sweep", "fixed")
SWEEP_SAMPLES: tuple[int, ...] = (4, 8, 16, 32, 64, 128)

_INT_AT_LEAST = {  # field -> smallest allowed value
    "cells": 2,
    "d_model": 1,
    "n_layers": 1,
    "n_heads": 1,
    "sft_steps": 0,
    "sft_batch": 1,
    "rl_steps": 0,
    "prompts_per_step": 1,
    "num_samples": 2,
    "train_pool": 1,
    "rl_pool": 0,
    "eval_mazes": 1,
    "eval_samples": 1,
    "probe_mazes": 0,
    "probe_samples": 1,
    "probe_every": 0,
    "eval_every": 0,
    "checkpoint_every": 1,
}
_POSITIVE_FLOATS = ("sft_lr", "rl_lr", "grad_clip")


@dataclass
class MazeConfig:
    """Everything that defines one maze experiment; validated when built.

    Use :meth:`for_scale` (or :meth:`cpu`, :meth:`long`, :meth:`gpu`) rather than the bare
    constructor: the defaults here are the ``long`` comparison.
    """

    scale: str = "long"
    device: str = "cpu"
    cells: int = 3
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    sft_steps: int = 300
    sft_batch: int = 32
    sft_lr: float = 2e-3
    rl_steps: int = 200
    prompts_per_step: int = 16
    num_samples: int = 16
    rl_lr: float = 3e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    methods: tuple[str, ...] = METHODS
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    train_pool: int = 5000
    rl_pool: int = 0
    eval_mazes: int = 256
    eval_samples: int = 64
    probe_mazes: int = 64
    probe_samples: int = 16
    probe_every: int = 20
    eval_every: int = 0
    checkpoint_every: int = 50
    autocast: bool = False

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"MazeConfig.scale must be one of {SCALES}, got {self.scale!r}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"MazeConfig.device: {self.device!r} is not a device") from error
        for name, low in _INT_AT_LEAST.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"MazeConfig.{name} must be an int, got {value!r}")
            if value < low:
                raise ValueError(f"MazeConfig.{name} must be >= {low}, got {value}")
            setattr(self, name, int(value))
        for name in (*_POSITIVE_FLOATS, "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"MazeConfig.{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0 or (value == 0 and name != "weight_decay"):
                expected = ">= 0" if name == "weight_decay" else "> 0"
                raise ValueError(f"MazeConfig.{name} must be finite and {expected}, got {value}")
            setattr(self, name, float(value))
        if not isinstance(self.autocast, bool):
            raise TypeError(f"MazeConfig.autocast must be a bool, got {self.autocast!r}")
        prompt_length(self.cells)  # cells within the supported sizes
        if self.d_model % self.n_heads:
            raise ValueError(
                f"MazeConfig.d_model ({self.d_model}) must be divisible by MazeConfig.n_heads "
                f"({self.n_heads})"
            )
        if self.rl_pool > self.train_pool:
            raise ValueError(
                f"MazeConfig.rl_pool ({self.rl_pool}) cannot exceed MazeConfig.train_pool "
                f"({self.train_pool})"
            )
        if self.probe_mazes > self.train_pool:
            raise ValueError(
                f"MazeConfig.probe_mazes ({self.probe_mazes}) cannot exceed MazeConfig.train_pool "
                f"({self.train_pool}): the probe set is made of training mazes"
            )
        self.methods = _distinct("methods", self.methods, str)
        unknown = [m for m in self.methods if m not in ADVANTAGES]
        if unknown:
            raise ValueError(f"MazeConfig: unknown methods {unknown}; known: {sorted(ADVANTAGES)}")
        self.seeds = _distinct("seeds", self.seeds, numbers.Integral)
        if any(isinstance(s, bool) or s < 0 for s in self.seeds):
            raise ValueError(f"MazeConfig.seeds must be ints >= 0, got {list(self.seeds)}")
        self.seeds = tuple(int(s) for s in self.seeds)

    # ---------------------------------------------------------------------------------- scales
    @classmethod
    def for_scale(cls, scale: str, experiment: str = "compare", **overrides) -> MazeConfig:
        """The preset of ``scale`` for ``experiment``, with ``overrides`` applied last."""
        if scale not in SCALES:
            raise ValueError(f"MazeConfig.for_scale: scale must be one of {SCALES}, got {scale!r}")
        if experiment not in EXPERIMENTS:
            raise ValueError(
                f"MazeConfig.for_scale: experiment must be one of {EXPERIMENTS}, got {experiment!r}"
            )
        values = {**_PRESETS[scale]["base"], **_PRESETS[scale][experiment], **overrides}
        return cls(scale=scale, **values)

    @classmethod
    def cpu(cls, **overrides) -> MazeConfig:
        """The live slice of ``long`` that the chapter runs on 2 CPU cores (about a minute)."""
        return cls.for_scale("cpu", **overrides)

    @classmethod
    def long(cls, **overrides) -> MazeConfig:
        """The committed CPU scale: 5 seeds, 256 held-out mazes, about an hour on one core."""
        return cls.for_scale("long", **overrides)

    @classmethod
    def gpu(cls, **overrides) -> MazeConfig:
        """One CUDA GPU: 4x4-cell mazes, a 0.8M-parameter model, bf16 autocast."""
        return cls.for_scale("gpu", **overrides)

    @classmethod
    def for_device(cls, device: torch.device | str | None = None, **overrides) -> MazeConfig:
        """``gpu`` scale on CUDA, ``cpu`` scale otherwise (``None``: ``default_device()``)."""
        from companion.runtime import default_device

        device = torch.device(device) if device is not None else default_device()
        if device.type == "cuda":
            return cls.gpu(device=str(device), **overrides)
        return cls.cpu(device=str(device), **overrides)

    # ----------------------------------------------------------------------------- conversions
    def model_config(self) -> ModelConfig:
        """The transformer's hyperparameters (context = prompt + longest answer)."""
        context = prompt_length(self.cells) + max_answer_length(self.cells)
        return ModelConfig(
            vocab_size=VOCAB_SIZE,
            context_length=context,
            d_model=self.d_model,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
        )

    def to_dict(self) -> dict:
        """JSON-ready: tuples become lists."""
        out = dataclasses.asdict(self)
        out["methods"], out["seeds"] = list(self.methods), list(self.seeds)
        return out

    @classmethod
    def from_dict(cls, values: dict) -> MazeConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"MazeConfig.from_dict: unknown fields {unknown}")
        return cls(**values)

    def replace(self, **changes) -> MazeConfig:
        """A validated copy with ``changes``."""
        return dataclasses.replace(self, **changes)


def _distinct(name: str, values: object, kind: type) -> tuple:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"MazeConfig.{name} must be a sequence, got {values!r}")
    values = tuple(values)
    if not values:
        raise ValueError(f"MazeConfig.{name} must not be empty")
    if not all(isinstance(v, kind) for v in values):
        raise TypeError(f"MazeConfig.{name}: expected {kind.__name__} values, got {list(values)}")
    if len(set(values)) != len(values):
        raise ValueError(f"MazeConfig.{name} has duplicates: {list(values)}")
    return values


_LONG = dict(
    device="cpu",
    cells=3,
    d_model=64,
    n_layers=2,
    n_heads=4,
    sft_steps=300,
    sft_batch=32,
    sft_lr=2e-3,
    rl_steps=200,
    prompts_per_step=16,
    num_samples=16,
    rl_lr=3e-4,
    seeds=(0, 1, 2, 3, 4),
    train_pool=5000,
    eval_mazes=256,
    eval_samples=64,
    probe_mazes=64,
    probe_samples=16,
    probe_every=20,
)
_PRESETS: dict[str, dict[str, dict]] = {
    "long": {
        "base": _LONG,
        "compare": {},
        "sweep": dict(prompts_per_step=4, rl_steps=80, eval_samples=32),
        "fixed": dict(methods=("grpo", "maxrl"), rl_pool=64, rl_steps=300, eval_every=100),
    },
    "cpu": {  # a slice of long: same data, model and SFT, seed 0, first RL steps, one block
        "base": {**_LONG, "seeds": (0,), "rl_steps": 20, "eval_mazes": 32},
        "compare": {},
        "sweep": dict(prompts_per_step=4, rl_steps=4, eval_samples=32),
        "fixed": dict(methods=("grpo", "maxrl"), rl_pool=64, rl_steps=20, eval_every=10),
    },
    "gpu": {
        "base": dict(
            device="cuda",
            cells=4,
            d_model=128,
            n_layers=4,
            n_heads=4,
            sft_steps=1500,
            sft_batch=64,
            sft_lr=5e-4,
            rl_steps=200,
            prompts_per_step=32,
            num_samples=64,
            rl_lr=1e-4,
            seeds=(0, 1, 2),
            train_pool=50_000,
            eval_mazes=256,
            eval_samples=128,
            probe_mazes=128,
            probe_samples=32,
            probe_every=10,
            autocast=True,
        ),
        "compare": {},
        "sweep": dict(rl_steps=100),
        "fixed": dict(methods=("grpo", "maxrl"), rl_pool=128, rl_steps=400, eval_every=50),
    },
}


def describe(config: MazeConfig) -> str:
    """A few lines that say what ``config`` runs, for printing."""
    params = MazeTransformer(config.model_config()).num_parameters()
    size = 2 * config.cells + 1
    probe = (
        f"probe {config.probe_mazes} training mazes x {config.probe_samples} every "
        f"{config.probe_every} steps"
        if config.probe_mazes and config.probe_every
        else "no probe"
    )
    held_out = (
        f"every {config.eval_every} steps and at the end" if config.eval_every else "at the end"
    )
    return (
        f"scale {config.scale} on {config.device}: {config.cells}x{config.cells}-cell mazes "
        f"({size}x{size} tokens), model {params / 1e6:.3f}M params "
        f"({config.n_layers} layers, width {config.d_model}, {config.n_heads} heads)\n"
        f"SFT {config.sft_steps} steps x {config.sft_batch} mazes, lr {config.sft_lr:g}; "
        f"RL {config.rl_steps} steps x {config.prompts_per_step} mazes x "
        f"{config.num_samples} rollouts, lr {config.rl_lr:g}\n"
        f"methods {', '.join(config.methods)}; seeds {list(config.seeds)}; SFT on "
        f"{config.train_pool} mazes, RL on {config.rl_pool or config.train_pool}; {probe}\n"
        f"held-out {config.eval_mazes} mazes x {config.eval_samples} samples, {held_out}"
    )
