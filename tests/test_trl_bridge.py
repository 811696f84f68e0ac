"""The generic TRL bridge: the advantages TRL applies equal the companion's (chapter 10).

Each trainer test records what reaches TRL's ``_compute_loss`` (after its gather, slicing,
shuffling and splitting), regroups the rows by prompt, recomputes every completion's reward
with the same reward function and compares the applied advantages with the companion estimator
on those rewards. Then the version range, the first-step check and the failure modes.
"""

from __future__ import annotations

import importlib
import re
import sys
import tomllib
import warnings
from pathlib import Path

import pytest

pytest.importorskip(
    "trl", reason='TRL is an optional dependency (chapter 10): pip install -e ".[scale]"'
)

import torch  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
import trl_kernel_fallback  # noqa: E402  (tests/: TRL 1.15 on a CPU)
from trl import GRPOTrainer, RLOOConfig, RLOOTrainer  # noqa: E402

from companion.estimators import ADVANTAGES, grpo, maxrl, policy_gradient_loss, rloo  # noqa: E402
from companion.integrations import trl as ctrl  # noqa: E402
from companion.integrations.trl_maze import (  # noqa: E402
    make_mazes,
    maze_dataset,
    maze_tokenizer,
    tiny_causal_lm,
)

ROOT = Path(__file__).resolve().parents[1]
KERNEL_FALLBACK = trl_kernel_fallback.apply()  # False with TRL 1.16
NUM_GENERATIONS = 8
PROMPTS_PER_STEP = 4

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def first_token_even_reward(completion_ids, **_):
    """Binary reward of a completion, recomputable from what reaches the loss."""
    return [float(len(ids) > 0 and ids[0] % 2 == 0) for ids in completion_ids]


def always_one_reward(completion_ids, **_):
    return [1.0] * len(completion_ids)


def reward_of(completion: list[int]) -> float:
    return first_token_even_reward([completion])[0]


@pytest.fixture(scope="module")
def parts():
    return {"tokenizer": maze_tokenizer(), "dataset": maze_dataset(make_mazes(2, 16, seed=0))}


def make_trainer(trainer_class, parts, tmp_path, *, steps=2, reward_funcs=None, **options):
    trainer_options = {
        key: options.pop(key)
        for key in ("advantage", "allow_untested_trl", "check_first_step")
        if key in options
    }
    args = ctrl.grpo_config(
        str(tmp_path),
        max_steps=steps,
        prompts_per_step=PROMPTS_PER_STEP,
        num_generations=NUM_GENERATIONS,
        max_completion_length=6,
        **options,
    )
    trainer = trainer_class(
        model=tiny_causal_lm(hidden_size=32, num_layers=1, num_heads=2, seed=1),
        reward_funcs=reward_funcs or first_token_even_reward,
        args=args,
        train_dataset=parts["dataset"],
        processing_class=parts["tokenizer"],
        **trainer_options,
    )
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    return trainer


def recorded(trainer_base):
    return type("Recording", (ctrl.RecordLossInputs, trainer_base), {})


def run_recorded(trainer_base, parts, tmp_path, *, steps=2, config_class=None, **options):
    """Train ``steps`` steps with a recording subclass of ``trainer_base``; return rewards
    (P, G), applied advantages (P, G) and the trainer."""
    if config_class is None:
        trainer = make_trainer(recorded(trainer_base), parts, tmp_path, steps=steps, **options)
    else:
        trainer = recorded(trainer_base)(
            model=tiny_causal_lm(hidden_size=32, num_layers=1, num_heads=2, seed=1),
            reward_funcs=first_token_even_reward,
            args=config_class(
                output_dir=str(tmp_path),
                max_steps=steps,
                num_generations=NUM_GENERATIONS,
                per_device_train_batch_size=PROMPTS_PER_STEP * NUM_GENERATIONS,
                max_completion_length=6,
                learning_rate=1e-3,
                bf16=False,
                gradient_checkpointing=False,
                report_to="none",
                save_strategy="no",
                disable_tqdm=True,
                use_cpu=not torch.cuda.is_available(),
                top_k=0,
                **options,
            ),  # fmt: skip
            train_dataset=parts["dataset"],
            processing_class=parts["tokenizer"],
        )
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    trainer.train()
    groups = ctrl.recorded_groups(trainer.loss_inputs)
    assert len(groups) == steps * PROMPTS_PER_STEP
    assert all(len(completions) == NUM_GENERATIONS for _, completions, _ in groups)
    rewards = torch.tensor([[reward_of(c) for c in completions] for _, completions, _ in groups])
    applied = torch.stack([advantages for _, _, advantages in groups])
    return rewards, applied, trainer


def assert_mixed(rewards):
    """Some group has both outcomes, so the comparison is not 0 == 0 only."""
    assert bool(((rewards.sum(1) > 0) & (rewards.sum(1) < rewards.shape[1])).any())


# ---------------------------------------------------------------------------------------------
# advantages that reach the loss
# ---------------------------------------------------------------------------------------------
def test_maxrl_advantages_reach_trl_loss(parts, tmp_path):
    rewards, applied, trainer = run_recorded(ctrl.CompanionGRPOTrainer, parts, tmp_path)
    assert_mixed(rewards)
    torch.testing.assert_close(applied, maxrl(rewards, "algorithm1"), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(applied, grpo(rewards, eps=1e-4), atol=1e-3)  # not TRL's GRPO
    for row_rewards, row_applied in zip(rewards, applied, strict=True):  # loop spec
        mean = float(row_rewards.mean())
        for r, a in zip(row_rewards.tolist(), row_applied.tolist(), strict=True):
            assert a == pytest.approx(0.0 if mean == 0 else (r - mean) / mean, abs=1e-6)
    assert trainer.last_advantages.shape == (PROMPTS_PER_STEP, NUM_GENERATIONS)
    # the first-step check compared every row of the first generation batch
    assert trainer.advantages_checked == PROMPTS_PER_STEP * NUM_GENERATIONS


@pytest.mark.parametrize("name", ["maxrl_control_variate", "dr_grpo"])
def test_other_companion_estimators_by_name(parts, tmp_path, name):
    rewards, applied, trainer = run_recorded(
        ctrl.CompanionGRPOTrainer, parts, tmp_path, steps=1, advantage=name
    )
    assert_mixed(rewards)
    assert trainer.advantage_name == name
    torch.testing.assert_close(applied, ADVANTAGES[name](rewards), rtol=1e-6, atol=1e-6)


def test_reward_weights_select_the_first_reward(parts, tmp_path):
    """reward_weights=[1, 0]: a second reward that always returns 1 changes nothing (without the
    weights the summed rewards would be 1 or 2, which MaxRL refuses)."""
    trainer = make_trainer(
        recorded(ctrl.CompanionGRPOTrainer), parts, tmp_path, steps=1,
        reward_funcs=[first_token_even_reward, always_one_reward], reward_weights=[1.0, 0.0],
    )  # fmt: skip
    trainer.train()
    groups = ctrl.recorded_groups(trainer.loss_inputs)
    rewards = torch.tensor([[reward_of(c) for c in completions] for _, completions, _ in groups])
    applied = torch.stack([advantages for _, _, advantages in groups])
    assert_mixed(rewards)
    torch.testing.assert_close(applied, maxrl(rewards), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scale_rewards", ["group", "none"])
def test_trl_grpo_equals_companion_grpo(parts, tmp_path, scale_rewards):
    rewards, applied, _ = run_recorded(GRPOTrainer, parts, tmp_path, scale_rewards=scale_rewards)
    assert_mixed(rewards)
    if scale_rewards == "group":
        expected = grpo(rewards, eps=1e-4, unbiased=True)
        torch.testing.assert_close(applied, expected, rtol=1e-6, atol=1e-6)
        # the conventions matter: verl's eps or the population std would not match
        assert not torch.allclose(applied, grpo(rewards, eps=1e-6), rtol=1e-6, atol=1e-6)
        assert not torch.allclose(applied, grpo(rewards, eps=1e-4, unbiased=False), atol=1e-3)
    else:
        torch.testing.assert_close(applied, grpo(rewards, scale="none"), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("normalize_advantages", [False, True])
def test_trl_rloo_equals_companion_rloo(parts, tmp_path, normalize_advantages):
    rewards, applied, _ = run_recorded(
        RLOOTrainer, parts, tmp_path, config_class=RLOOConfig, beta=0.0,
        normalize_advantages=normalize_advantages,
    )  # fmt: skip
    assert_mixed(rewards)
    expected = rloo(rewards)  # (P, G)
    if normalize_advantages:  # standardised over each step's batch, eps 1e-4, Bessel
        steps = expected.view(-1, PROMPTS_PER_STEP * NUM_GENERATIONS)
        mean, std = steps.mean(1, keepdim=True), steps.std(1, keepdim=True)
        expected = ((steps - mean) / (std + 1e-4)).view_as(rewards)
    torch.testing.assert_close(applied, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_trl_loss_gradient_matches_companion_aggregation(parts, tmp_path, loss_type):
    """TRL's "dapo" loss has the gradient of the companion's token_mean aggregation; "grpo"
    (per-sequence token mean) that of the sequence aggregation with A_i / L_i."""
    _, _, trainer = run_recorded(
        ctrl.CompanionGRPOTrainer, parts, tmp_path, steps=1, loss_type=loss_type
    )
    model, inputs = trainer.model, trainer.loss_inputs[0]

    def gradient(loss):
        model.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    trl_gradient = gradient(trainer._compute_loss(model, inputs))
    logprobs = ctrl.completion_token_logprobs(model, inputs)[None]  # (1, B, T)
    mask = inputs["completion_mask"].float()[None]
    advantages = inputs["advantages"][None]  # (1, B)
    if loss_type == "dapo":
        ours = policy_gradient_loss(logprobs, advantages, mask, aggregation="token_mean")
    else:
        lengths = mask.sum(-1)
        ours = policy_gradient_loss(logprobs, advantages / lengths, mask, aggregation="sequence")
    companion_gradient = gradient(ours)
    assert companion_gradient.abs().max() > 1e-3  # a real gradient, not 0 == 0
    torch.testing.assert_close(trl_gradient, companion_gradient, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# the version range
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["1.15.0", "1.15.3", "1.16.0", "1.16.2"])
def test_supported_versions_pass_silently(version, monkeypatch):
    monkeypatch.delenv(ctrl.ALLOW_UNTESTED_ENV, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ctrl.check_trl_version(version) == version


@pytest.mark.parametrize("version", ["1.14.2", "1.17.0", "2.0.0", "1.17.0.dev0", "1.16.0rc1", "x"])
def test_unsupported_versions_raise_unless_the_user_opts_in(version, monkeypatch):
    monkeypatch.delenv(ctrl.ALLOW_UNTESTED_ENV, raising=False)
    with pytest.raises(
        ctrl.UnsupportedTRLVersionError,
        match=rf"trl>=1\.15,<1\.17.*trl=={re.escape(version)}.*{ctrl.ALLOW_UNTESTED_ENV}=1",
    ):
        ctrl.check_trl_version(version)
    with pytest.warns(ctrl.UntestedTRLVersionWarning, match="running anyway"):
        assert ctrl.check_trl_version(version, allow_untested=True) == version
    monkeypatch.setenv(ctrl.ALLOW_UNTESTED_ENV, "1")
    with pytest.warns(ctrl.UntestedTRLVersionWarning):
        assert ctrl.check_trl_version(version) == version
    with pytest.raises(ctrl.UnsupportedTRLVersionError):  # the argument wins over the variable
        ctrl.check_trl_version(version, allow_untested=False)


def test_installed_version_is_tested_and_pins_agree():
    assert ctrl.check_trl_version() == trl.__version__
    assert trl.__version__ in ctrl.TESTED_TRL_VERSIONS
    for version in ctrl.TESTED_TRL_VERSIONS:
        assert ctrl.check_trl_version(version) == version
    # the book environment pins the newest tested release
    scale = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert f"trl=={ctrl.TESTED_TRL_VERSIONS[-1]}" in scale["scale"]
    # `make test-trl-versions` runs this file under every tested release
    makefile = (ROOT / "Makefile").read_text()
    declared = re.search(r"^TRL_VERSIONS\s*:?=\s*(.+)$", makefile, re.MULTILINE)
    assert declared and tuple(declared.group(1).split()) == ctrl.TESTED_TRL_VERSIONS


def test_untested_version_trains_with_opt_in_and_checks_the_first_step(
    parts, tmp_path, monkeypatch
):
    monkeypatch.delenv(ctrl.ALLOW_UNTESTED_ENV, raising=False)
    monkeypatch.setattr(trl, "__version__", "1.99.0")
    with pytest.raises(ctrl.UnsupportedTRLVersionError, match=r"trl==1\.99\.0"):
        make_trainer(ctrl.CompanionGRPOTrainer, parts, tmp_path, steps=1)
    with pytest.warns(ctrl.UntestedTRLVersionWarning):
        trainer = make_trainer(
            ctrl.CompanionGRPOTrainer, parts, tmp_path, steps=1, allow_untested_trl=True
        )
    trainer.train()
    assert trainer.advantages_checked == PROMPTS_PER_STEP * NUM_GENERATIONS


# ---------------------------------------------------------------------------------------------
# the first-step check catches a TRL that changes the advantages or the layout
# ---------------------------------------------------------------------------------------------
class ScalesAdvantages(ctrl.CompanionGRPOTrainer):
    """Like a TRL release that rescales the advantages after scoring."""

    def _prepare_inputs(self, generation_batch):
        inputs = super()._prepare_inputs(generation_batch)
        return {**inputs, "advantages": inputs["advantages"] * 2}


class MisalignsRows(ctrl.CompanionGRPOTrainer):
    """Like a TRL release that shuffles the advantages apart from their completions."""

    def _prepare_inputs(self, generation_batch):
        inputs = super()._prepare_inputs(generation_batch)
        return {**inputs, "advantages": inputs["advantages"].roll(1)}


@pytest.mark.parametrize("trainer_class", [ScalesAdvantages, MisalignsRows])
def test_first_step_check_catches_changed_advantages(parts, tmp_path, trainer_class):
    trainer = make_trainer(trainer_class, parts, tmp_path, steps=1)
    with pytest.raises(ctrl.AdvantageCheckError, match="reaching TRL's loss"):
        trainer.train()
    # the same trainer without the check trains silently on the wrong values
    trainer = make_trainer(trainer_class, parts, tmp_path, steps=1, check_first_step=False)
    trainer.train()
    assert trainer.advantages_checked == 0


class InterleavedGRPO(GRPOTrainer):
    """Like a TRL release whose batch is not ordered prompt by prompt: rows rolled by G/2."""

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        return {
            key: value.roll(NUM_GENERATIONS // 2, dims=0) if isinstance(value, torch.Tensor)
            and value.ndim and value.shape[0] == len(output["advantages"]) else value
            for key, value in output.items()
        }  # fmt: skip


def test_first_step_check_catches_groups_that_mix_prompts(parts, tmp_path):
    interleaved = type("Interleaved", (ctrl.CompanionGRPOTrainer, InterleavedGRPO), {})
    trainer = make_trainer(interleaved, parts, tmp_path, steps=1)
    with pytest.raises(ctrl.AdvantageCheckError, match="mixes prompts"):
        trainer.train()


# ---------------------------------------------------------------------------------------------
# failing loudly
# ---------------------------------------------------------------------------------------------
def test_maxrl_rejects_non_binary_rewards_inside_trl(parts, tmp_path):
    def half_reward(completion_ids, **_):
        return [0.5] * len(completion_ids)

    trainer = make_trainer(
        ctrl.CompanionGRPOTrainer, parts, tmp_path, steps=1, reward_funcs=half_reward
    )
    with pytest.raises(ValueError, match="binary rewards"):
        trainer.train()


def test_missing_log_probability_kernel_is_explained(parts, tmp_path, monkeypatch):
    """TRL 1.15 without Triton: a clear error at construction, not 'NoneType' during training."""
    import trl.trainer.utils as trl_utils

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", None, raising=False)
    with pytest.raises(RuntimeError, match=r"Triton kernel only.*trl>=1\.16"):
        make_trainer(ctrl.CompanionGRPOTrainer, parts, tmp_path, steps=1)


def test_missing_trl_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "trl", None)
    monkeypatch.delitem(sys.modules, "companion.integrations.trl")
    with pytest.raises(ImportError, match=r"trl>=1\.15,<1\.17"):
        importlib.import_module("companion.integrations.trl")


def test_generic_bridge_never_imports_a_toy():
    for module in ("trl.py", "trl_records.py"):
        source = (ROOT / "companion" / "integrations" / module).read_text()
        assert "companion.maze" not in source and "trl_maze" not in source.split('"""', 2)[2]


def test_resolve_and_group_advantages():
    name, fn = ctrl.resolve_advantage("maxrl")
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert name == "maxrl"
    assert ctrl.group_advantages(rewards, 4, fn).tolist() == [3.0, -1.0, -1.0, -1.0, 0, 0, 0, 0]
    assert ctrl.resolve_advantage("rloo")[1] is rloo
    with pytest.raises(ValueError, match="unknown advantage"):
        ctrl.resolve_advantage("ppo")
    with pytest.raises(ValueError, match="groups of"):
        ctrl.group_advantages(rewards, 3, fn)
    with pytest.raises(ValueError, match="N = 1"):  # Algorithm 1 with a group of one
        ctrl.group_advantages(rewards, 1, fn)
