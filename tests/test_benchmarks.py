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
        "eval_fractions": [0.25, 0.5, 0.75, 1.0],
    }
    return argparse.Namespace(**{**args, **overrides})


def test_every_arm_gets_the_same_counted_compute(reproduce):
    args = plan_args()
    arms = reproduce.build_arms(pretrain_share=0.25)
    budget = None
    for arm in arms.values():
        plan = reproduce.make_plan(args, arm)
        spent = sum(steps * flops for steps, flops in zip(plan.stage_steps, plan.stage_step_flops))
        budget = budget or spent  # the baseline comes first
        # Step counts are whole: each arm is within half a step of its last stage of the baseline's budget.
        assert abs(spent - budget) <= plan.stage_step_flops[-1] / 2 + 1, arm.name
        if len(arm.stages) == 2:
            # A masked step is cheaper, so the pre-training stage takes more steps than its share of full steps.
            assert plan.stage_steps[0] > 0.25 * args.budget_steps, arm.name
            # A pre-training stage is sampled only at its end (25 % of the budget), the model fine-tuning starts from.
            pretraining_evals = [(fraction, step) for fraction, stage, step in plan.evals if stage == 0]
            expected = [(0.25, plan.stage_steps[0])] if 0.25 in (arm.eval_fractions or args.eval_fractions) else []
            assert pretraining_evals == expected, arm.name
        assert plan.evals[-1][0] == 1.0 and plan.evals[-1][2] == plan.stage_steps[-1], arm.name
        assert [fraction for fraction, _, _ in plan.evals] == sorted(fraction for fraction, _, _ in plan.evals)


def test_compute_to_reach_interpolates_between_evaluations(reproduce):
    evals = [{"fid": 300.0, "gflops": 10.0}, {"fid": 200.0, "gflops": 20.0}, {"fid": 100.0, "gflops": 40.0}]
    assert reproduce.compute_to_reach(evals, 150.0, "gflops") == pytest.approx(30.0)
    assert reproduce.compute_to_reach(evals, 400.0, "gflops") == pytest.approx(10.0)
    assert reproduce.compute_to_reach(evals, 50.0, "gflops") is None


def test_merge_results_adds_arms_and_missing_evaluations(reproduce):
    def record(*fractions):
        return {"evals": [{"fraction": fraction, "fid": 100 * fraction} for fraction in fractions]}

    results = {"baseline": record(0.5, 1.0), "maskdm": record(0.5, 1.0)}
    reproduce.merge_results(results, {"maskdm": record(0.25, 0.5), "ablation": record(1.0)})
    assert [entry["fraction"] for entry in results["maskdm"]["evals"]] == [0.25, 0.5, 1.0]
    assert [entry["fraction"] for entry in results["baseline"]["evals"]] == [0.5, 1.0]
    assert results["ablation"] == record(1.0)


@pytest.mark.parametrize("script", ["bench_token_dropping.py", "bench_sampling.py", "bench_training.py"])
def test_benchmark_smoke_run(script):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "|" in result.stdout  # a markdown table was printed


def test_reproduce_smoke_run_resumes_without_redoing_work(tmp_path):
    command = [sys.executable, str(BENCHMARKS / "reproduce.py"), "--quick", "--run_dir", str(tmp_path)]
    command += ["--arms", "baseline", "maskdm_block90"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    # The baseline at every fraction; MaskDM at the end of pre-training (sampled as full images) and after it.
    assert [e["fraction"] for e in results["baseline"]["evals"]] == [0.25, 0.5, 1.0]
    assert [(e["fraction"], e["stage"]) for e in results["maskdm_block90"]["evals"]] == [
        (0.25, "pretrain"),
        (0.5, "finetune"),
        (1.0, "finetune"),
    ]
    assert all(e["fid"] > 0 and e["train_seconds"] > 0 for arm in results.values() for e in arm["evals"])
    assert "| maskdm_block90 |" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "reproduction_fid_vs_flops.png").stat().st_size > 0

    second = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "training" not in second.stdout and "FID-50 =" not in second.stdout  # everything was done already
    assert json.loads((tmp_path / "results.json").read_text()) == results

    # A new evaluation point before where training already got to cannot be measured there: a clear error.
    third = subprocess.run(command + ["--eval_fractions", "0.375", "1.0"], capture_output=True, text=True, timeout=900)
    assert third.returncode != 0
    assert "already trained past" in third.stderr and "fresh --run_dir" in third.stderr
