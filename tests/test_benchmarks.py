"""The benchmark scripts stay runnable (smoke runs), and the reproduction's plan gives every arm the same compute."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def reproduce():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import reproduce

        yield reproduce
    finally:
        sys.path.remove(str(BENCHMARKS))


def plan_args(**overrides):
    args = {
        "model_preset": "tiny",
        "resolution": 16,
        "train_batch_size": 4,
        "budget_steps": 100,
        "pretrain_share": 0.25,
        "fewshot_steps": 10,
        "control_batch_size": 1,
        "eval_fractions": [0.25, 0.5, 1.0],
    }
    return argparse.Namespace(**{**args, **overrides})


def test_every_arm_gets_the_same_counted_compute(reproduce):
    args = plan_args()
    arms = reproduce.build_arms(args)
    budget = None
    masked_steps = reproduce.make_plan(args, arms["maskdm_block90"]).stage_steps[0]
    for arm in arms.values():
        plan = reproduce.make_plan(args, arm)
        spent = sum(steps * flops for steps, flops in zip(plan.stage_steps, plan.stage_step_flops))
        if arm.name.startswith(("fewshot", "finetune_lr")):
            continue  # their own, shorter budgets
        budget = budget or spent  # the baseline comes first
        # Step counts are whole: each arm is within half a step of its last stage of the baseline's budget.
        assert abs(spent - budget) <= plan.stage_step_flops[-1] / 2 + 1, arm.name
        if arm.name == "control_small_batch":
            # As many updates as MaskDM's pre-training, at a batch whose step costs about a masked step.
            assert plan.stage_steps[0] == masked_steps
            assert plan.stage_step_flops[0] < 0.5 * plan.stage_step_flops[1]
        elif len(arm.stages) == 2:
            # A masked step is cheaper, so the pre-training stage takes more steps than its share of full steps.
            assert plan.stage_steps[0] > 0.25 * args.budget_steps, arm.name
            # A pre-training stage is sampled only at its end (25 % of the budget), the model fine-tuning starts from.
            pretraining_evals = [(fraction, step) for fraction, stage, step in plan.evals if stage == 0]
            expected = [(0.25, plan.stage_steps[0])] if 0.25 in (arm.eval_fractions or args.eval_fractions) else []
            assert pretraining_evals == expected, arm.name
        assert plan.evals[-1][0] == 1.0 and plan.evals[-1][2] == plan.stage_steps[-1], arm.name
        assert [fraction for fraction, _, _ in plan.evals] == sorted(fraction for fraction, _, _ in plan.evals)


def test_control_batch_costs_about_a_masked_step(reproduce):
    args = plan_args(resolution=32, train_batch_size=32)
    batch = reproduce.control_batch_size(args)
    masked = reproduce.stage_flops(args, reproduce.Stage("masked", "block", 0.9))
    full = reproduce.stage_flops(args, reproduce.Stage("full"))
    # The nearest whole batch: within half an image of the masked step's cost.
    assert abs(batch - 32 * masked / full) <= 0.5


def test_compute_to_reach_interpolates_between_evaluations(reproduce):
    evals = [{"fid": 300.0, "gflops": 10.0}, {"fid": 200.0, "gflops": 20.0}, {"fid": 100.0, "gflops": 40.0}]
    assert reproduce.compute_to_reach(evals, 150.0, "gflops") == pytest.approx(30.0)
    assert reproduce.compute_to_reach(evals, 400.0, "gflops") == pytest.approx(10.0)
    assert reproduce.compute_to_reach(evals, 50.0, "gflops") is None
    # What the evaluations alone show: the one before the target and the first at or below it.
    assert reproduce.crossing(evals, 150.0) == (evals[1], evals[2])
    assert reproduce.crossing(evals, 400.0) == (None, evals[0]) and reproduce.crossing(evals, 50.0) is None


def test_the_full_run_measures_every_arm_with_its_seeds(reproduce):
    arms = reproduce.build_arms(plan_args())
    runs = reproduce.default_runs(arms)
    assert len(set(runs)) == len(runs)
    assert {(name, seed) for name, seed in runs} == {
        (name, seed) for name, arm in arms.items() for seed in range(arm.seeds)
    }
    seeds = {name: sum(1 for n, _ in runs if n == name) for name in arms}
    assert seeds["baseline"] == seeds["maskdm_block90"] == 3 and seeds["control_small_batch"] == 2
    # The sweep needs MaskDM's seed-0 pre-training, few-shot the baseline's 25 % model: both come first.
    assert runs.index(("maskdm_block90", 0)) < runs.index(("finetune_lr_0.0001", 0))
    assert runs.index(("baseline", 0)) < runs.index(("fewshot_baseline", 0))


def test_a_missing_start_folder_says_which_run_makes_it(reproduce, tmp_path):
    arms = reproduce.build_arms(plan_args())
    args = plan_args(run_dir=str(tmp_path))
    assert reproduce.first_stage_source(args, arms["fewshot_scratch"], 0) is None
    for name, needed in (("fewshot_baseline", "baseline/seed1/at_0.25"), ("finetune_lr_0.0001", "maskdm_block90")):
        with pytest.raises(SystemExit, match=f"{name}.*needs .*{needed}.* finished first"):
            reproduce.first_stage_source(args, arms[name], 1)
    (tmp_path / "baseline/seed1/at_0.25").mkdir(parents=True)
    (tmp_path / "baseline/seed1/at_0.25/model_index.json").write_text("{}")
    assert reproduce.first_stage_source(args, arms["fewshot_baseline"], 1) == tmp_path / "baseline/seed1/at_0.25"


def arm_results(*seeds: list[tuple[float, float]]) -> dict:
    """An arm's results record: one list of (budget fraction, FID) per seed."""
    return {"seeds": {str(i): [{"fraction": f, "fid": fid} for f, fid in evals] for i, evals in enumerate(seeds)}}


def test_verdicts_follow_the_seed_spread(reproduce):
    results = {
        "baseline": arm_results([(0.5, 300.0), (1.0, 280.0)], [(0.5, 310.0), (1.0, 276.0)]),
        "maskdm_block90": arm_results([(0.5, 200.0), (1.0, 180.0)], [(0.5, 205.0), (1.0, 170.0)]),
        "control_small_batch": arm_results([(0.5, 210.0), (1.0, 175.0)], [(0.5, 220.0), (1.0, 190.0)]),
        "maskdm_block90_nopos": arm_results([(1.0, 250.0)]),
        "single_stage_block90": arm_results([(1.0, 160.0)]),
        "fewshot_maskdm": arm_results([(0.1, 100.0)]),
    }
    # Widest relative spread of the main arms at 50 % and 100 %: MaskDM at the end, 10 / 175.
    assert reproduce.main_arm_spread(results) == pytest.approx(10 / 175)
    rows = {claim: (verdict, evidence) for claim, verdict, evidence in reproduce.verdicts(results)}
    first = rows["MaskDM reaches the baseline's final FID with less compute"]
    assert first[0] == "holds" and "2 of 2 seeds" in first[1] and "all by 50 %" in first[1]
    assert rows["... beyond the update-matched control"][0] == "cannot be told at this scale"  # 170-180 vs 175-190
    assert rows["no positions during pre-training hurts"][0] == "holds"  # 250 +- 2.9 % lies above 170-180
    assert rows["single-stage masked training falls short of two stages"][0] == "does not hold"
    assert rows["few-shot: pre-trained beats scratch"][0] == "not measured yet"

    results["fewshot_scratch"] = arm_results([(0.1, 200.0)])
    fewshot = dict((c, (v, e)) for c, v, e in reproduce.verdicts(results))["few-shot: pre-trained beats scratch"]
    assert fewshot[0] == "holds" and "50 % lower FID (the paper: 46 %)" in fewshot[1]
    results["fewshot_baseline"] = arm_results([(0.1, 103.0)])  # 100 vs 103, inside 100 +- 5.7 %
    rows = {claim: (verdict, evidence) for claim, verdict, evidence in reproduce.verdicts(results)}
    assert rows["... and the baseline at the same FLOPs"] == (
        "cannot be told at this scale",
        "from MaskDM 100.0 vs from the baseline 103.0; 3 % lower FID",
    )
    # Lower at the end, but reached the baseline's final mean only at the end: not shown with less compute.
    results["maskdm_block90"] = arm_results([(0.5, 290.0), (1.0, 200.0)], [(0.5, 300.0), (1.0, 210.0)])
    assert reproduce.verdicts(results)[0][1] == "cannot be told at this scale"


def test_spread_is_mean_and_range(reproduce):
    assert reproduce.spread([1.0, 2.0, 6.0]) == "3.0 (1.0-6.0, n=3)"
    assert reproduce.spread([2.5]) == "2.5" and reproduce.spread([]) == ""


@pytest.mark.parametrize("script", ["bench_token_dropping.py", "bench_sampling.py", "bench_training.py"])
def test_benchmark_smoke_run(script):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "|" in result.stdout  # a markdown table was printed


def test_reproduce_smoke_run_of_every_arm_resumes_without_redoing_work(tmp_path):
    command = [sys.executable, str(BENCHMARKS / "reproduce.py"), "--quick", "--run_dir", str(tmp_path)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert first.returncode == 0, first.stderr[-3000:]
    saved = json.loads((tmp_path / "results.json").read_text())
    results = saved["arms"]
    assert saved["settings"]["prediction_type"] == "epsilon"
    # Every arm of the default plan, with its seeds of the full run.
    assert set(results) == {
        "baseline", "maskdm_block90", "control_small_batch", "maskdm_block90_nopos", "single_stage_block90",
        "finetune_lr_0.0003", "finetune_lr_0.0001", "finetune_lr_3e-05",
        "fewshot_maskdm", "fewshot_baseline", "fewshot_scratch",
    }  # fmt: skip
    assert all(set(record["seeds"]) == {"0"} for record in results.values())  # --quick: seed 0 of each
    # The baseline at every fraction; MaskDM at the end of pre-training (sampled as full images) and after it.
    assert [e["fraction"] for e in results["baseline"]["seeds"]["0"]] == [0.25, 0.5, 1.0]
    assert [(e["fraction"], e["stage"]) for e in results["maskdm_block90"]["seeds"]["0"]] == [
        (0.25, "pretrain"),
        (0.5, "finetune"),
        (1.0, "finetune"),
    ]
    entries = [e for arm in results.values() for evals in arm["seeds"].values() for e in evals]
    assert all(e["fid"] > 0 and e["train_seconds"] > 0 and e["updates"] > 0 for e in entries)
    # MaskDM's pre-training is trained once: the sweep copies it.
    sweep = results["finetune_lr_0.0001"]["seeds"]["0"]
    assert [e["stage"] for e in sweep] == ["finetune"] and sweep[0]["fraction"] == pytest.approx(0.35)
    report = (tmp_path / "report.md").read_text()
    assert "| maskdm_block90 |" in report and "| fewshot_scratch |" in report
    assert "| baseline | " in report and "x |" not in report.split("| baseline |")[1].split("\n")[0]
    assert "after 2 steps: " in report.split("| fewshot_scratch |")[1]
    assert (tmp_path / "reproduction_fid_vs_flops.png").stat().st_size > 0

    second = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "] training" not in second.stdout and "FID-20 =" not in second.stdout  # everything was done already
    assert json.loads((tmp_path / "results.json").read_text())["arms"] == results

    # A new evaluation point before where training already got to cannot be measured there: a clear error.
    third = subprocess.run(command + ["--eval_fractions", "0.375", "1.0"], capture_output=True, text=True, timeout=900)
    assert third.returncode != 0
    assert "already trained past" in third.stderr and "fresh --run_dir" in third.stderr
