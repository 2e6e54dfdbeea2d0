"""The benchmark scripts stay runnable (smoke runs), and the reproduction's plan gives every arm the same compute."""

import argparse
import json
import math
import os
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
        "best_scratch": None,
        "learning_rate": 3e-4,
        "lr_warmup_steps": 0,
        "finetune_learning_rate": None,
        "finetune_warmup_steps": 0,
        "prediction_type": "epsilon",
        "mixed_precision": "no",
        "fid_samples": 8,
        "fid_inference_steps": 2,
        "results_copy": None,
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
        if arm.name.startswith(("fewshot", "finetune_lr", "unseen_start")):
            continue  # their own, shorter budgets
        budget = budget or spent  # the baseline comes first
        # Step counts are whole: each arm is within half a step of its last stage of the baseline's budget.
        assert abs(spent - budget) <= plan.stage_step_flops[-1] / 2 + 1, arm.name
        if arm.name == "control_small_batch":
            # As many updates as MaskDM's pre-training, at a batch whose step costs about a masked step; measured at
            # the end of that stage too.
            assert plan.stage_steps[0] == masked_steps
            assert plan.stage_step_flops[0] < 0.5 * plan.stage_step_flops[1]
            assert plan.evals[0] == (masked_steps * plan.stage_step_flops[0] / budget, 0, masked_steps)
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
    arms = reproduce.build_arms(plan_args(best_scratch="scratch_b4_lr0.001"))
    runs = reproduce.default_runs(arms)
    assert len(set(runs)) == len(runs)
    # Every seed of every arm, but the few-shot starts on the unseen domain: the few-shot runs train them.
    assert {(name, seed) for name, seed in runs} == {
        (name, seed) for name, arm in arms.items() for seed in range(arm.seeds) if not name.startswith("unseen_start")
    }
    seeds = {name: sum(1 for n, _ in runs if n == name) for name in arms}
    assert seeds["baseline"] == seeds["maskdm_block90"] == 3 and seeds["control_small_batch"] == 2
    # The tuned baseline gets three seeds and the sampling seeds, the rest of the sweep one.
    assert seeds["scratch_b4_lr0.001"] == 3 and arms["scratch_b4_lr0.001"].sampling_seeds == 3
    assert seeds["scratch_b8_lr0.001"] == 1 and arms["scratch_b8_lr0.001"].sampling_seeds == 1
    # The sweep needs MaskDM's seed-0 pre-training, few-shot the baseline's 25 % model: both come first.
    assert runs.index(("maskdm_block90", 0)) < runs.index(("finetune_lr_0.0001", 0))
    assert runs.index(("baseline", 0)) < runs.index(("fewshot_baseline", 0))


def test_the_unseen_domain_is_every_flag_and_no_training_split_of_its_starts_holds_one(reproduce, tmp_path):
    assert reproduce.is_flag("1f1eb-1f1f7.png")  # France: two regional indicators
    assert reproduce.is_flag("1f3f4-e0067-e0062-e0073-e0063-e0074-e007f.png")  # Scotland: a black flag and tags
    assert reproduce.is_flag("1f3f3-fe0f-200d-1f308.png") and reproduce.is_flag("1f3c1.png")  # rainbow, chequered
    assert not reproduce.is_flag("1f4eb.png") and not reproduce.is_flag("26f3.png")  # a mailbox's flag, golf
    assert not reproduce.is_flag("1f1e6.png")  # one regional indicator: a letter, not a flag
    args = plan_args(run_dir=str(tmp_path), quick=True)
    reproduce.split_data(args)
    names = {
        split: set(os.listdir(tmp_path / "data" / split)) for split in ("train", "heldout", "unseen", "train_unseen")
    }
    assert names["unseen"] and all(map(reproduce.is_flag, names["unseen"]))
    assert names["train"] | names["heldout"] == names["train_unseen"] | names["unseen"] | names["heldout"]
    assert not names["train_unseen"] & names["unseen"] and not names["train"] & names["heldout"]
    for arm in reproduce.build_arms(plan_args(best_scratch="scratch_b8_lr0.001")).values():
        start = arm.name.startswith("unseen_start")
        assert all(stage.data == "train_unseen" for stage in arm.stages) == start, arm.name
        if arm.name.startswith("fewshot_unseen"):
            assert arm.stages[0].data == "unseen"
            assert arm.stages[0].start_from in (
                None,
                (
                    f"unseen_start_{arm.name.split('_')[-1]}",
                    arm.stages[0].start_from[1] if arm.stages[0].start_from else None,
                ),
            )


def test_a_missing_start_is_trained_again_from_its_seed(reproduce, tmp_path, monkeypatch):
    args = plan_args(run_dir=str(tmp_path))
    arms = reproduce.build_arms(args)
    assert reproduce.first_stage_source(args, arms["fewshot_scratch"], 0) is None
    trained = []

    def train_to(args, arm, seed, index, step):
        stage_dir = tmp_path / arm.name / f"seed{seed}" / arm.stages[index].name
        stage_dir.mkdir(parents=True, exist_ok=True)
        (stage_dir / "model_index.json").write_text("{}")
        (stage_dir / "checkpoint-4").mkdir(exist_ok=True)
        trained.append((arm.name, seed, index, step))
        return stage_dir

    monkeypatch.setattr(reproduce, "train_to", train_to)
    # The baseline's model at 25 % of the budget: trained to that step, kept as its own folder without checkpoints.
    source = reproduce.first_stage_source(args, arms["fewshot_baseline"], 1)
    assert source == tmp_path / "baseline/seed1/at_0.25" and (source / "model_index.json").exists()
    assert not (source / "checkpoint-4").exists()
    assert trained == [("baseline", 1, 0, 25)]
    # MaskDM's pre-training: to the end of that stage; found without training the next time.
    masked_steps = reproduce.make_plan(args, arms["maskdm_block90"]).stage_steps[0]
    assert (
        reproduce.first_stage_source(args, arms["finetune_lr_0.0001"], 2) == tmp_path / "maskdm_block90/seed2/pretrain"
    )
    assert reproduce.first_stage_source(args, arms["fewshot_maskdm"], 2) == tmp_path / "maskdm_block90/seed2/pretrain"
    assert trained[1:] == [("maskdm_block90", 2, 0, masked_steps)]


def test_a_save_writes_its_own_seed_and_keeps_the_seeds_other_processes_wrote(reproduce, tmp_path):
    # Two lanes run seeds of one arm. This process read seed 1's first point; the other lane has since added its second.
    on_disk = {"arms": {"baseline": {"seeds": {"1": [{"fraction": 0.25}, {"fraction": 0.5}]}}}}
    (tmp_path / "results.json").write_text(json.dumps(on_disk))
    results = {"baseline": {"description": "d", "seeds": {"0": [{"fraction": 0.25}], "1": [{"fraction": 0.25}]}}}
    copy = tmp_path / "copy.json"
    reproduce.save_results(plan_args(run_dir=str(tmp_path), results_copy=str(copy)), results, "baseline", 0)
    for path in (tmp_path / "results.json", copy):
        seeds = json.loads(path.read_text())["arms"]["baseline"]["seeds"]
        assert seeds == {"0": [{"fraction": 0.25}], "1": [{"fraction": 0.25}, {"fraction": 0.5}]}
    assert results["baseline"]["seeds"]["1"] == [{"fraction": 0.25}, {"fraction": 0.5}]


def test_a_kept_model_whose_measurement_was_lost_is_measured_again(reproduce, tmp_path, monkeypatch):
    args = plan_args(run_dir=str(tmp_path), eval_fractions=[0.25, 0.5])
    arm = reproduce.build_arms(args)["baseline"]
    run_folder = tmp_path / "baseline" / "seed1"
    (run_folder / "train").mkdir(parents=True)
    (run_folder / "at_0.5").mkdir()
    (run_folder / "at_0.5" / "model_index.json").write_text("{}")
    # The run trained on to step 80 after its model at step 50 was kept; the measurement of that model was not saved.
    monkeypatch.setattr(reproduce, "find_latest_checkpoint", lambda folder: folder / "checkpoint-80")
    monkeypatch.setattr(reproduce, "read_training_state", lambda checkpoint: {"global_step": 80, "train_seconds": 9.0})
    monkeypatch.setattr(reproduce, "train_to", lambda *a: pytest.fail("a model kept already is not trained again"))
    measured = []
    results = {"baseline": {"seeds": {"1": [{"fraction": 0.25, "fid": 300.0}]}}}
    reproduce.run_one(args, arm, 1, results, lambda *a: None, lambda folder, split: measured.append(folder) or 200.0)
    assert measured == [run_folder / "at_0.5"]
    entry = results["baseline"]["seeds"]["1"][-1]
    assert (entry["fraction"], entry["step"], entry["fid"], entry["train_seconds"]) == (0.5, 50, 200.0, None)
    # Without the kept model, the point is gone: say so.
    results["baseline"]["seeds"]["1"].pop()
    (run_folder / "at_0.5" / "model_index.json").unlink()
    with pytest.raises(SystemExit, match="already trained past its step 50"):
        reproduce.run_one(args, arm, 1, results, lambda *a: None, lambda folder, split: 200.0)


def test_each_sampling_seed_is_saved_as_it_is_measured(reproduce, tmp_path):
    args = plan_args(run_dir=str(tmp_path), eval_fractions=[1.0])
    arm = reproduce.build_arms(args)["baseline"]
    snapshot = tmp_path / "baseline" / "seed0" / "at_1"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    final, saved = {"fid": 200.0}, []

    def fid(folder, split, sampling_seed):
        if sampling_seed == 2:
            raise KeyboardInterrupt  # the run is stopped while it measures the last seed
        return 210.0

    plan = reproduce.make_plan(args, arm)
    with pytest.raises(KeyboardInterrupt):
        reproduce.measure_sampling_seeds(
            args, arm, 0, plan, final, fid, lambda: saved.append(dict(final["fid_sampling_seeds"]))
        )
    assert saved == [{"0": 200.0, "1": 210.0}]


def test_t_quantiles(reproduce):
    # Student's t at 97.5 %, from printed tables.
    for df, expected in ((1, 12.706), (2, 4.303), (5, 2.571), (10, 2.228), (30, 2.042)):
        assert reproduce.t_quantile(0.975, df) == pytest.approx(expected, abs=2e-3)


def arm_results(*seeds: list[tuple[float, float]]) -> dict:
    """An arm's results record: one list of (budget fraction, FID) per seed; a budget of 100 GFLOPs."""
    return {
        "seeds": {
            str(i): [{"fraction": f, "fid": fid, "gflops": 100 * f} for f, fid in evals]
            for i, evals in enumerate(seeds)
        }
    }


def test_verdicts_follow_a_pooled_t_test_over_training_seeds(reproduce):
    results = {
        "baseline": arm_results([(0.5, 300.0), (1.0, 280.0)], [(0.5, 310.0), (1.0, 276.0)]),
        "maskdm_block90": arm_results([(0.5, 200.0), (1.0, 180.0)], [(0.5, 205.0), (1.0, 170.0)]),
        "control_small_batch": arm_results([(0.5, 210.0), (1.0, 175.0)], [(0.5, 220.0), (1.0, 190.0)]),
        "maskdm_block90_nopos": arm_results([(1.0, 250.0)]),
        "single_stage_block90": arm_results([(1.0, 140.0)]),
        "fewshot_maskdm": arm_results([(0.1, 100.0)]),
    }
    # Pooled relative SD over the 8 points at 50 % and 100 % with two seeds: one degree of freedom each.
    relative = [(a - b) / (a + b) for a, b in ((300, 310), (280, 276), (200, 205), (180, 170), (210, 220), (175, 190))]
    sd, df = reproduce.seed_noise(results)
    assert df == 6 and sd == pytest.approx(math.sqrt(sum(2 * r * r for r in relative) / 6))
    t = reproduce.t_quantile(0.975, 6)
    assert reproduce.margin([100.0], [100.0, 100.0], (0.01, 6)) == pytest.approx(t * 0.01 * 100 * math.sqrt(1.5))
    rows = {claim: (verdict, evidence) for claim, verdict, evidence in reproduce.verdicts(results)}
    first = rows["MaskDM reaches the untuned baseline's final FID with less compute"]
    assert first[0] == "holds" and "2 of 2 seeds" in first[1] and "all by 50 %" in first[1]
    # 175 vs 182.5 with a margin of t(6) * 3.4 % * 178.75 * sqrt(1/2 + 1/2) = 15.0: within the noise.
    assert rows["... beyond the update-matched control"][0] == "cannot be told at this scale"
    assert rows["no positions during pre-training hurts"][0] == "holds"
    assert rows["single-stage masked training falls short of two stages"][0] == "does not hold"
    assert rows["few-shot on the held-out tenth: from MaskDM beats from scratch"][0] == "not measured yet"
    assert rows["MaskDM beats the tuned baseline"][0] == "not measured yet"  # the sweep has not run

    results["fewshot_scratch"] = arm_results([(0.1, 200.0)])
    fewshot = dict((c, (v, e)) for c, v, e in reproduce.verdicts(results))
    assert fewshot["few-shot on the held-out tenth: from MaskDM beats from scratch"][0] == "holds"
    assert (
        "50 % lower FID (the paper: 46 %)"
        in fewshot["few-shot on the held-out tenth: from MaskDM beats from scratch"][1]
    )

    # The tuned baseline: the sweep's best final FID of seed 0 once every setting has finished, here batch 8 at 1e-3,
    # which matches MaskDM.
    for setting in reproduce.SCRATCH_SWEEP[:-1]:
        assert reproduce.best_scratch(results) is None
        results[reproduce.scratch_name(*setting)] = arm_results([(0.5, 280.0), (1.0, 260.0)])
    results["scratch_b8_lr0.001"] = arm_results([(0.5, 190.0), (1.0, 176.0)])
    assert reproduce.best_scratch(results) is None  # batch 32 at 1e-3 still runs
    results["scratch_b32_lr0.001"] = arm_results([(0.5, 280.0), (1.0, 260.0)])
    assert reproduce.best_scratch(results) == "scratch_b8_lr0.001"
    assert reproduce.verdicts(results)[0][1] == "not measured yet"  # one seed of the tuned baseline so far
    results["scratch_b8_lr0.001"] = arm_results([(0.5, 190.0), (1.0, 176.0)], [(0.5, 195.0), (1.0, 178.0)])
    claim, verdict, evidence = reproduce.verdicts(results)[0]
    assert claim == "MaskDM beats the tuned baseline (scratch_b8_lr0.001)" and verdict.startswith("does not hold")
    assert "at most 4.00x can show with 25 % of the budget in pre-training" in evidence
    # Lower beyond the noise, but at the tuned baseline's final FID only after half the budget: in between.
    results["scratch_b8_lr0.001"] = arm_results([(0.5, 190.0), (1.0, 196.0)], [(0.5, 195.0), (1.0, 198.0)])
    assert reproduce.verdicts(results)[0][1].startswith("in between")
    results["scratch_b8_lr0.001"] = arm_results([(0.5, 230.0), (1.0, 216.0)], [(0.5, 235.0), (1.0, 218.0)])
    assert reproduce.verdicts(results)[0][1].startswith("holds")
    # MaskDM at the fine-tuning rate its sweep chose.
    results["finetune_lr_0.0003"] = arm_results([(0.35, 220.0)])
    results["finetune_lr_0.001"] = arm_results([(0.35, 210.0)])
    assert reproduce.best_maskdm(results) == "maskdm_block90_ft0.001"
    assert reproduce.verdicts(results)[0][1] == "not measured yet"
    # Lower at the end, but reached the baseline's final mean only at the end: not shown with less compute.
    results["maskdm_block90_ft0.001"] = arm_results([(0.5, 290.0), (1.0, 200.0)], [(0.5, 300.0), (1.0, 210.0)])
    rows = {claim: (verdict, evidence) for claim, verdict, evidence in reproduce.verdicts(results)}
    assert (
        rows["MaskDM reaches the untuned baseline's final FID with less compute"][0] == "cannot be told at this scale"
    )
    # The control is fine-tuned at the pre-training rate: it is judged against MaskDM fine-tuned at that rate.
    assert rows["... beyond the update-matched control"][1].startswith(
        "MaskDM at the control's fine-tuning rate 175.0"
    )


def test_sampling_noise_is_pooled_over_models(reproduce):
    results = {"baseline": arm_results([(1.0, 100.0)], [(1.0, 200.0)])}
    results["baseline"]["seeds"]["0"][-1]["fid_sampling_seeds"] = {"0": 100.0, "1": 102.0, "2": 98.0}
    results["baseline"]["seeds"]["1"][-1]["fid_sampling_seeds"] = {"0": 200.0, "1": 200.0, "2": 200.0}
    sd, df, models = reproduce.sampling_noise(results)
    assert df == 4 and sd == pytest.approx(math.sqrt((0.02**2 * 2) / 4))
    assert models == ["baseline:0 100.0/102.0/98.0", "baseline:1 200.0/200.0/200.0"]
    assert "pooled SD of 1.4 % of the mean (4 degrees of freedom)" in reproduce.rule_text(results)


def test_a_ratio_states_the_cap_of_a_pre_training_share(reproduce):
    # Below a target of 150 at its first evaluation (50 %): 2.00x or more, of at most 4.00x.
    record = arm_results([(0.5, 140.0), (1.0, 120.0)])
    assert reproduce.reach_text(record, 150.0) == "≥ 2.00x; between evaluations: 2.00x or more"
    assert reproduce.reach_text(record, 150.0, pretrain_share=0.25).endswith(
        "2.00x or more (at most 4.00x can show with 25 % of the budget in pre-training)"
    )
    assert reproduce.reach_text(record, 100.0, pretrain_share=0.25) == "not reached by 1 seed(s)"


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


def test_gpu_check_smoke_run_writes_every_row(tmp_path):
    # The GPU figures' script at tiny sizes on the CPU: every network x precision x compile row, full and masked.
    command = [sys.executable, str(BENCHMARKS / "gpu_check.py"), "--smoke", "--json", str(tmp_path / "gpu.json")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    rows = {(row["network"], row["dtype"], row["compiled"]) for row in report["rows"]}
    assert len(rows) == 8 and {dtype for _, dtype, _ in rows} == {"bfloat16", "float16"} and not report["left_out"]
    assert all(row["full"]["ms_per_step"] > 0 and row["masked_90"]["ms_per_step"] > 0 for row in report["rows"])
    assert set(report["sampling"]) == {"pixel (smoke)", "latent (smoke)"}


def test_reproduce_smoke_run_of_each_kind_of_arm_resumes_without_redoing_work(tmp_path):
    command = [sys.executable, str(BENCHMARKS / "reproduce.py"), "--quick", "--run_dir", str(tmp_path)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert first.returncode == 0, first.stderr[-3000:]
    saved = json.loads((tmp_path / "results.json").read_text())
    results = saved["arms"]
    assert saved["settings"]["prediction_type"] == "epsilon"
    # An arm of each kind and the tuned baseline; the few-shot starts on the unseen domain are trained, not measured.
    assert set(results) == {
        "baseline", "maskdm_block90", "control_small_batch", "maskdm_block90_nopos", "single_stage_block90",
        "finetune_lr_0.001", "fewshot_maskdm", "fewshot_baseline", "maskdm_block90_ft0.001",
        "fewshot_unseen_control", "fewshot_unseen_best", "scratch_b8_lr0.001",
    }  # fmt: skip
    assert (tmp_path / "unseen_start_control/seed0/pretrain/model_index.json").exists()
    assert (tmp_path / "unseen_start_best/seed0/train/model_index.json").exists()
    assert all(set(record["seeds"]) == {"0"} for record in results.values())  # --quick: seed 0 of each
    # The final models of the baseline, the tuned baseline, MaskDM and the control at three sampling seeds.
    for name, record in results.items():
        sampling = record["seeds"]["0"][-1].get("fid_sampling_seeds", {})
        measured = name in (
            "baseline",
            "scratch_b8_lr0.001",
            "maskdm_block90",
            "maskdm_block90_ft0.001",
            "control_small_batch",
        )
        assert len(sampling) == (3 if measured else 0) and len(set(sampling.values())) == len(sampling), name
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
    sweep = results["finetune_lr_0.001"]["seeds"]["0"]
    assert [e["stage"] for e in sweep] == ["finetune"] and sweep[0]["fraction"] == pytest.approx(0.35)
    report = (tmp_path / "report.md").read_text()
    assert "| maskdm_block90 |" in report and "| fewshot_unseen_control |" in report
    assert "| baseline | " in report and "x |" not in report.split("| baseline |")[1].split("\n")[0]
    assert "after 2 steps: " in report.split("| fewshot_unseen_best |")[1]
    # The control at the end of its batch-2 stage, before fine-tuning.
    assert [e["stage"] for e in results["control_small_batch"]["seeds"]["0"]] == ["pretrain", "finetune", "finetune"]
    assert (tmp_path / "reproduction_fid_vs_flops.png").stat().st_size > 0

    second = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "] training" not in second.stdout and "FID-20 =" not in second.stdout  # everything was done already
    assert json.loads((tmp_path / "results.json").read_text())["arms"] == results

    # A new evaluation point before where training already got to cannot be measured there: a clear error.
    third = subprocess.run(command + ["--eval_fractions", "0.375", "1.0"], capture_output=True, text=True, timeout=900)
    assert third.returncode != 0
    assert "already trained past" in third.stderr and "fresh --run_dir" in third.stderr
