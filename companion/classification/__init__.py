"""Classification as a sampling task (chapter 8): MaxRL approaches cross-entropy as N grows.

A linear student over C = 1000 classes is a policy whose rollouts are labels; the reward is 1
when the sampled label is the example's label. Cross-entropy is exact maximum likelihood; the
policy gradients (REINFORCE, RLOO, GRPO, MaxRL) see only sampled labels and their rewards.

* :mod:`~companion.classification.config`: ``ClassificationConfig`` (one run, validated).
* :mod:`~companion.classification.task`: teacher, data, student, sampled labels, metrics.
* :mod:`~companion.classification.train`: the loss of a step and the training loop.
* :mod:`~companion.classification.sweep`: learning-rate tuning, the N-sweep over seeds,
  resumable result folders with provenance.
* :mod:`~companion.classification.report` and :mod:`~companion.classification.figures`:
  tables over seeds, paired bootstraps, the analytic share, figures.

Train one run with :func:`companion.classification.train.train`; run
``python -m companion.classification --help`` for the command line.
"""

from companion.classification.config import (
    METHOD_NAMES,
    METHODS,
    REGIME,
    SMALL,
    ClassificationConfig,
    run_label,
)
from companion.classification.sweep import SweepPlan, plan_for_scale, run_sweep
from companion.classification.task import (
    ClassificationTask,
    label_rewards,
    make_student,
    make_task,
    sample_labels,
    teacher_probabilities,
)
from companion.classification.train import NonFiniteTrainingError, RunResult, step_loss

__all__ = [
    "METHODS",
    "METHOD_NAMES",
    "REGIME",
    "SMALL",
    "ClassificationConfig",
    "ClassificationTask",
    "NonFiniteTrainingError",
    "RunResult",
    "SweepPlan",
    "label_rewards",
    "make_student",
    "make_task",
    "plan_for_scale",
    "run_label",
    "run_sweep",
    "sample_labels",
    "step_loss",
    "teacher_probabilities",
]
