"""Tests of companion.classification.sweep and .provenance: plans, resumable runs, rate choice."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os

import pytest

from companion.classification import sweep
from companion.classification.config import SMALL
from companion.classification.provenance import device_name, git_state, provenance
from companion.classification.sweep import (
    SweepPlan,
    check_output_folder,
    choose_learning_rates,
    extend_grids,
    initial_grids,
    load_run,
    main_configs,
    plan_for_scale,
    run_path,
    run_sweep,
    tune_configs,
)
from companion.classification.train import RunResult

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dataclasses.replace(
    SMALL, num_classes=20, input_dim=3, train_size=300, validation_size=50, batch_size=8,
    steps=6, eval_every=3, pass_at_ks=(4,), scale="custom",
)  # fmt: skip
MICRO = SweepPlan(
    base=TINY,
    methods=("cross_entropy", "maxrl"),
    learning_rates={"sgd": (0.5, 5.0)},
    tune_num_samples=4,
    tune_seeds=(9,),
    seeds=(0, 1),
    sample_counts={"sgd": (2, 4)},
    long_steps=9,
    long_runs=(("sgd", "maxrl", 4),),
    grid_extensions=0,
)


@pytest.mark.parametrize("scale", ["cpu", "long", "gpu"])
def test_named_plans_are_valid_and_tune_fairly(scale):
    plan = plan_for_scale(scale)
    assert SweepPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    assert "reinforce" in plan.methods and "cross_entropy" in plan.methods
    assert len(plan.seeds) >= (2 if scale == "cpu" else 5)
    for grid in plan.learning_rates.values():  # >= 3 rates spanning >= 100x, for every method
        assert len(grid) >= 3 and max(grid) / min(grid) >= 100


def test_the_long_plan_is_the_papers_regime():
    plan = plan_for_scale("long")
    assert plan.base.num_classes == 1000 and plan.tune_num_samples == 1024
    assert plan.sample_counts["sgd"] == (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
    assert set(plan.methods) == {"cross_entropy", "reinforce", "rloo", "grpo", "maxrl"}
    assert set(plan.learning_rates) == {"sgd", "adam"}
    assert ("sgd", "maxrl", 128) in plan.long_runs and plan.long_steps > plan.base.steps


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"tune_seeds": (0,)}, "disjoint"),
        ({"seeds": ()}, "disjoint"),
        ({"methods": ("maxrl", "maxrl")}, "distinct"),
        ({"learning_rates": {"rmsprop": (1.0,)}}, "learning_rates"),
        ({"sample_counts": {"adam": (2,)}}, "same optimizers"),
        ({"selection_metric": "pass@16"}, "selection_metric"),
        ({"long_steps": 3}, "long_steps"),
        ({"long_runs": (("sgd", "maxrl", 8),)}, "not a planned"),
        ({"sample_counts": {"sgd": (1,)}}, "num_samples"),
        ({"learning_rates": {"sgd": (0.0,)}}, "learning_rate"),
        ({"base": "TINY"}, "ClassificationConfig"),
        ({"grid_extensions": -1}, "grid_extensions"),
    ],
)
def test_bad_plans_raise(changes, match):
    with pytest.raises((ValueError, TypeError), match=match):
        dataclasses.replace(MICRO, **changes)


def test_configs_of_each_stage():
    tuned = tune_configs(MICRO)
    assert len(tuned) == 2 * 2 * 1
    assert {(c.method, c.num_samples) for c in tuned} == {("cross_entropy", 1), ("maxrl", 4)}
    assert {c.task_seed for c in tuned} == {9} and all(c.task_seed == c.train_seed for c in tuned)
    chosen = {"sgd": {"cross_entropy": 5.0, "maxrl": 0.5}}
    configs = main_configs(MICRO, chosen)
    assert [c.task_seed for c in configs] == [0, 0, 0, 1, 1, 1]
    assert [(c.method, c.num_samples, c.learning_rate, c.steps) for c in configs[:3]] == [
        ("cross_entropy", 1, 5.0, 6), ("maxrl", 2, 0.5, 6), ("maxrl", 4, 0.5, 9)
    ]  # fmt: skip
    path = run_path("out", "main", configs[2])
    assert path.as_posix() == "out/main/sgd/maxrl-N4-lr0.5-task0-train0.json"


def _result(optimizer, method, lr, seed, nll, error=""):
    config = dataclasses.replace(TINY, optimizer=optimizer, method=method, learning_rate=lr,
                                 task_seed=seed, train_seed=seed, num_samples=1)  # fmt: skip
    return RunResult(config=config.to_dict(), steps=[0, 6], error=error,
                     metrics={"nll": [9.0, nll], "pass@1": [0.0, 1 / nll]})  # fmt: skip


def test_choose_learning_rates_by_mean_over_seeds_ties_and_divergence():
    runs = [
        _result("sgd", "cross_entropy", 1.0, 0, 2.0),
        _result("sgd", "cross_entropy", 1.0, 1, 4.0),  # mean 3.0
        _result("sgd", "cross_entropy", 10.0, 0, 2.5),
        _result("sgd", "cross_entropy", 10.0, 1, 2.9),  # mean 2.7: best
        _result("sgd", "cross_entropy", 100.0, 0, 1.0),
        _result("sgd", "cross_entropy", 100.0, 1, 1.0, error="diverged"),  # inf
        _result("adam", "cross_entropy", 0.1, 0, 2.0),
        _result("adam", "cross_entropy", 0.01, 0, 2.0),  # tie: the smaller rate
    ]
    assert choose_learning_rates(runs) == {
        "sgd": {"cross_entropy": 10.0},
        "adam": {"cross_entropy": 0.01},
    }
    by_pass = choose_learning_rates(runs, "pass@1")  # pass@1 = 1/nll here: 0.375 beats 0.372
    assert by_pass["sgd"]["cross_entropy"] == 1.0


def test_sweep_writes_every_run_with_provenance_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "results"
    chosen = run_sweep(MICRO, out, echo=lambda line: None)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json"))
    assert len(files) == 2 + 4 + 2 * 3  # plan + rates, tuning runs, comparison runs
    assert "main/sgd/maxrl-N4-lr" + f"{chosen['sgd']['maxrl']:g}-task1-train1.json" in files
    assert json.loads((out / "learning_rates.json").read_text())["chosen"] == chosen
    long_run = load_run(next(out.glob("main/sgd/maxrl-N4-*-task0-train0.json")))
    assert long_run.steps == [0, 3, 6, 9] and long_run.provenance["config"] == long_run.config
    short_run = load_run(next(out.glob("main/sgd/maxrl-N2-*-task0-train0.json")))
    assert list(long_run.example_log_pass_rates) == ["6"] and short_run.example_log_pass_rates == {}
    # Resume: nothing runs again.
    monkeypatch.setattr(sweep, "execute", lambda *a, **k: pytest.fail("a finished run ran again"))
    assert run_sweep(MICRO, out, echo=lambda line: None) == chosen
    with pytest.raises(ValueError, match="another plan"):
        run_sweep(dataclasses.replace(MICRO, seeds=(0, 2)), out, echo=lambda line: None)


def test_a_different_run_at_the_same_path_is_refused(tmp_path):
    config = tune_configs(MICRO)[0]
    path = run_path(tmp_path, "tune", config)
    other = dataclasses.replace(config, steps=config.steps + 1)
    sweep.write_json(path, RunResult(config=other.to_dict()).to_dict())
    assert load_run(run_path(tmp_path, "tune", tune_configs(MICRO)[1]), None) is None
    with pytest.raises(ValueError, match="another config"):
        load_run(path, config)


def test_a_diverged_run_is_recorded_not_raised(monkeypatch):
    from companion.classification.train import NonFiniteTrainingError

    def explode(*args, **kwargs):
        raise NonFiniteTrainingError("the loss became NaN")

    monkeypatch.setattr(sweep, "train", explode)
    result = sweep.execute(TINY, "cpu")
    assert result.error == "the loss became NaN" and result.provenance["config"] == TINY.to_dict()


def test_check_output_folder(tmp_path):
    assert check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # creates nothing
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        check_output_folder(tmp_path / "file")
    with pytest.raises(ValueError, match="not a writable folder"):
        check_output_folder(tmp_path / "file" / "below")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="not a writable folder"):
            check_output_folder(locked / "out")


def test_provenance_block():
    block = provenance({"steps": 3}, "cpu", 1_700_000_000.0, 12.3456)
    assert block["config"] == {"steps": 3} and block["wall_seconds"] == 12.346
    assert (
        block["started"]
        == datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.UTC).isoformat()
    )
    assert block["device"] == "cpu" and block["device_name"] == device_name("cpu") != ""
    state = git_state()
    assert len(state["commit"]) == 40 and isinstance(state["clean"], bool)
    assert {"torch_version", "python_version", "torch_threads"} <= set(block)


def test_extend_grids_past_an_edge_that_holds_the_choice():
    grids = {"sgd": {"cross_entropy": (1.0, 10.0, 100.0), "maxrl": (1.0, 10.0, 100.0),
                     "grpo": (1.0, 10.0, 100.0)}}  # fmt: skip
    chosen = {"sgd": {"cross_entropy": 10.0, "maxrl": 1.0, "grpo": 100.0}}
    wider = extend_grids(grids, chosen)
    assert wider["sgd"]["cross_entropy"] == (1.0, 10.0, 100.0)
    assert wider["sgd"]["maxrl"] == pytest.approx((0.1, 1.0, 10.0, 100.0))
    assert wider["sgd"]["grpo"] == pytest.approx((1.0, 10.0, 100.0, 1000.0))
    assert extend_grids(grids, {"sgd": dict.fromkeys(chosen["sgd"], 10.0)}) is None


def test_sweep_extends_a_grid_until_the_choice_is_inside(tmp_path, monkeypatch):
    """A fake trainer whose NLL is |log10(lr) + 1.5|. On the grid (0.5, 5) the lower edge wins,
    so 0.05 is added; it wins at the new edge, so 0.005 is added; it loses: 0.05 is inside."""

    def fake(config, device, task=None, progress=False, keep_examples_at=()):
        nll = abs(math.log10(config.learning_rate) + 1.5) + (config.method == "maxrl")
        return RunResult(config=config.to_dict(), steps=[0, config.steps],
                         metrics={"nll": [9.0, nll], "pass@1": [0.0, 0.5]},
                         provenance={"wall_seconds": 0.0})  # fmt: skip

    monkeypatch.setattr(sweep, "execute", fake)
    monkeypatch.setattr(sweep, "make_task", lambda config, device: None)
    plan = dataclasses.replace(MICRO, grid_extensions=2)
    chosen = run_sweep(plan, tmp_path, echo=lambda line: None)
    rates = json.loads((tmp_path / "learning_rates.json").read_text())
    assert chosen == {"sgd": {"cross_entropy": 0.05, "maxrl": 0.05}}
    assert rates["grids"]["sgd"]["maxrl"] == pytest.approx([0.005, 0.05, 0.5, 5.0])
    assert len(list((tmp_path / "tune").rglob("*.json"))) == 2 * 4  # methods x rates x 1 seed
    assert initial_grids(plan) == {"sgd": {"cross_entropy": (0.5, 5.0), "maxrl": (0.5, 5.0)}}
