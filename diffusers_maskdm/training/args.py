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
"""The flags of the training script (named as in diffusers' `train_unconditional.py` where the idea is the same),
the `TrainingConfig` they become, and the checks of the flags alone: `parse_args` refuses every flag that is wrong on
its own or with others, creating nothing; what needs the model source or the data is checked by `setup`."""

import argparse
import dataclasses
import importlib.util
import math
import os
import typing
from pathlib import Path
from typing import Any

import torch
from diffusers.optimization import SchedulerType

from ..masking import MASK_KINDS, MASK_ROUNDINGS
from ..pipelines.pipeline_masked_ddpm import MAX_DIFFUSION_STEPS
from .presets import MODEL_PRESETS, RECIPES, apply_recipe, explicit_flags


PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
VALIDATION_SCHEDULERS = ("ddpm", "ddim", "dpmsolver++", "sde-dpmsolver++")  # see `export.GRID_SCHEDULERS`
# The range of a flag, `(test, what the message says)`, checked by `validate_args` (a flag left out is `None`).
POSITIVE = (lambda value: value > 0, "must be positive")
POSITIVE_INT = (lambda value: value >= 1, "must be a positive integer (or left out)")
NON_NEGATIVE = (lambda value: value >= 0, "must be >= 0")
FRACTION = (lambda value: 0 <= value < 1, "must be in [0, 1)")
AT_LEAST_2 = (lambda value: value >= 2, "must be at least 2")
UNIT_OPEN = (lambda value: 0 < value < 1, "must be in (0, 1), e.g. 0.9999")
SEED = (lambda value: 0 <= value < 2**32, "must be in [0, 2**32) (NumPy seeds the data order with it)")
DIFFUSION_STEPS = (
    lambda value: 1 <= value <= MAX_DIFFUSION_STEPS,
    f"must be an integer in [1, {MAX_DIFFUSION_STEPS}]",
)
# `piecewise_constant` needs step rules that no flag passes: diffusers' `get_scheduler` would fail deep inside.
LR_SCHEDULERS = [s.value for s in SchedulerType if s.value != "piecewise_constant"]


def flag(default: Any = None, help: str = "", check: tuple | None = None, **options) -> Any:
    """A `TrainingConfig` field that is a flag: default, help, range `check`, `--help` group, argparse options."""
    return dataclasses.field(default=default, metadata={"help": help, "check": check, **options})


@dataclasses.dataclass
class TrainingConfig:
    """What a training run is asked to do: one field per flag of `build_parser` (`--<field>`, its help in the field),
    typed, checked by `validate_args`. `recipe_values` holds the resolved values of `--recipe` (`{}` without one)."""

    dataset_name: str | None = flag(help="A Hub dataset (anything `load_dataset` takes).", group="data")
    dataset_config_name: str | None = flag(help="The config of --dataset_name.")
    train_data_dir: str | None = flag(help="An image folder (sub-folders: labels). Default: the embedded Twemoji.")
    image_column: str | None = flag(help="The image column (default: the first one).")
    label_column: str | None = flag(help="The class-label column.")
    cache_dir: str | None = flag(help="Cache folder of datasets and Hub downloads.")
    resolution: int = flag(32, "Images are resized and cropped to this side.", AT_LEAST_2)
    center_crop: bool = flag(False, "Crop the centre (default: a random crop).")
    random_flip: bool = flag(False, "Flip images horizontally at random.")
    num_channels: int | None = flag(help="1 (grayscale) or 3 (RGB); default: the data's.", choices=(1, 3))
    max_train_samples: int | None = flag(help="Train on this many images (few-shot).", check=POSITIVE_INT)
    ignore_labels: bool = flag(False, "Train unconditionally even on labelled data.")
    streaming: bool = flag(False, "Read --dataset_name while training, never whole (a dataset larger than the disk).")
    dataloader_num_workers: int | None = flag(
        help="DataLoader worker processes per process (default: on a GPU a share of the CPUs, up to 8; none on CPU).",
        check=NON_NEGATIVE,
    )
    pretrained_model_name_or_path: str | None = flag(
        help="Start from this script's output folder or checkpoint, or a Hub repo id.", group="model"
    )
    revision: str | None = flag(help="Hub revision of --pretrained_model_name_or_path.")
    init_from_ema: bool = flag(False, "Start from the EMA weights of the source.")
    model_config: str | None = flag(help="A JSON file of MaskedDiTModel arguments.")
    model_preset: str | None = flag(
        help="tiny (CPU), small (the default), base, or an official MaskDM network.", choices=sorted(MODEL_PRESETS)
    )
    gradient_checkpointing: bool = flag(False, "Trade compute for memory.")
    vae_name_or_path: str | None = flag(
        help="Train on the latents of this diffusers AutoencoderKL (folder or Hub id; default: the pre-trained's).",
        group="latent space",
    )
    vae_subfolder: str | None = flag(help="The VAE's subfolder, e.g. `vae` of a Stable Diffusion repo.")
    latents_cache_dir: str | None = flag(help="Where latents are cached (default: $HF_HOME/diffusers_maskdm/latents).")
    mask_type: str = flag("block", "How patches are masked.", choices=MASK_KINDS, group="masked pre-training")
    mask_rate: float = flag(
        None, "Share of patches dropped (0: fine-tuning). Default: 0.9, or 0 from a pre-trained model.", FRACTION
    )
    mask_block_size: int | None = flag(help="Block side in patches (block masks; 2).", check=POSITIVE_INT)
    mask_crop_size: int | None = flag(help="Visible window side in patches (crop masks).", check=POSITIVE_INT)
    mask_rounding: str = flag("nearest", "Masked count: nearest, or floor (the official).", choices=MASK_ROUNDINGS)
    prediction_type: str | None = flag(
        help="The target.",
        choices=PREDICTION_TYPES,
        group="diffusion (default: pre-trained's, or epsilon/1000/linear)",
    )
    ddpm_num_steps: int | None = flag(help="Diffusion steps.", check=DIFFUSION_STEPS)
    ddpm_beta_schedule: str | None = flag(help="The noise schedule.", choices=BETA_SCHEDULES)
    recipe: str | None = flag(
        help="An official MaskDM recipe; flags given win.", choices=sorted(RECIPES), group="optimisation"
    )
    recipe_values: dict = dataclasses.field(default_factory=dict)  # not a flag
    train_batch_size: int = flag(16, "Batch size per process.", POSITIVE)
    num_epochs: int = flag(100, "Epochs, unless --max_train_steps is given.", POSITIVE)
    max_train_steps: int | None = flag(help="Optimizer steps; overrides --num_epochs.", check=POSITIVE_INT)
    gradient_accumulation_steps: int = flag(1, "Micro-batches per step.", POSITIVE)
    learning_rate: float = flag(1e-4, "Peak learning rate.", POSITIVE)
    lr_scheduler: str = flag("cosine", "diffusers' `get_scheduler`.", choices=LR_SCHEDULERS)
    lr_warmup_steps: int = flag(500, "Linear warm-up steps.", NON_NEGATIVE)
    adam_beta1: float = flag(0.9, "AdamW beta1.", FRACTION)
    adam_beta2: float = flag(0.999, "AdamW beta2.", FRACTION)
    adam_weight_decay: float = flag(1e-6, "On weight matrices only.", NON_NEGATIVE)
    adam_epsilon: float = flag(1e-8, "AdamW epsilon.", POSITIVE)
    max_grad_norm: float = flag(1.0, "Gradient clipping norm.", POSITIVE)
    use_ema: bool = flag(False, "Keep an EMA of the weights (diffusers EMAModel).")
    ema_decay: float = flag(0.9999, "Maximum EMA decay.", UNIT_OPEN, aliases=("--ema_max_decay",))
    ema_inv_gamma: float = flag(1.0, "EMA warm-up inverse gamma.", POSITIVE)
    ema_power: float = flag(3 / 4, "EMA warm-up power.", POSITIVE)
    class_dropout_prob: float = flag(0.1, "Chance of the null label (classifier-free guidance).", FRACTION)
    max_consecutive_nonfinite_steps: int = flag(10, "Stop (saved) after N non-finite steps in a row.", POSITIVE)
    seed: int = flag(0, "Seeds the model, data order, noise and masks.", SEED)
    output_dir: str = flag("maskdm-model", "Checkpoints, logs and the pipeline.", group="run")
    overwrite_output_dir: bool = flag(False, "Start afresh in a folder with another run's checkpoints (deleted).")
    logging_dir: str = flag("logs", "TensorBoard folder, inside --output_dir.")
    logging_steps: int = flag(10, "Log (and read the loss back from the device) every N steps.", POSITIVE)
    report_to: str = flag("tensorboard", "Where to log.", choices=("tensorboard", "wandb", "all", "none"))
    mixed_precision: str | None = flag(help="Default: accelerate's.", choices=("no", "fp16", "bf16"))
    cpu: bool = flag(False, "Train on the CPU even when a GPU is there.")
    no_tf32: bool = flag(False, "Full fp32 matmuls on CUDA (TF32 is on by default, as DiT trains).")
    num_cpu_threads: int | None = flag(help="Threads per process (default: all cores).", check=POSITIVE_INT)
    ddp_timeout: int = flag(1800, "Seconds a process waits for the others in a collective.", POSITIVE_INT)
    checkpointing_steps: int = flag(500, "Save a checkpoint every N steps.", POSITIVE)
    checkpoints_total_limit: int | None = flag(help="Keep at most N checkpoints.", check=POSITIVE_INT)
    resume_from_checkpoint: str | None = flag(help="A checkpoint folder, or `latest` (newest intact).")
    validation_steps: int | None = flag(help="Save a sample grid every N steps.", check=POSITIVE_INT)
    num_validation_images: int = flag(16, "Images in a sample grid.", POSITIVE)
    validation_inference_steps: int = flag(50, "Sampling steps of the sample grids.", POSITIVE)
    validation_scheduler: str = flag("ddpm", "Grid sampler (ddim: eta 0, unclipped).", choices=VALIDATION_SCHEDULERS)
    eval_fid_steps: int | None = flag(help="Compute FID every N steps (main process).", check=POSITIVE_INT)
    eval_fid_num_images: int = flag(1000, "The N of FID-N.", AT_LEAST_2)
    push_to_hub: bool = flag(False, "Push the final pipeline and its card to the Hub.")
    hub_model_id: str | None = flag(help="Repo id (default: the --output_dir name).")
    hub_token: str | None = flag(help="Hub token (default: the logged-in one).")
    hub_private_repo: bool = flag(False, "Create the repo as private.")

    @property
    def stage(self) -> str:
        """`"pretrain"` (masked) or `"finetune"` (full images)."""
        return "pretrain" if self.mask_rate > 0 else "finetune"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the training script: one flag per field of `TrainingConfig` (see docs/training.md)."""
    parser = argparse.ArgumentParser(
        description="Masked pre-training (--mask_rate > 0) and fine-tuning (--mask_rate 0) of a MaskedDiTModel "
        "(MaskDM, arXiv 2306.11363). Run it with `accelerate launch` or `python -m diffusers_maskdm.train`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for field in dataclasses.fields(TrainingConfig):
        if "help" not in field.metadata:
            continue
        options = {key: value for key, value in field.metadata.items() if key not in ("check", "group", "aliases")}
        if "group" in field.metadata:
            group = parser.add_argument_group(field.metadata["group"])
        names = (f"--{field.name}", *field.metadata.get("aliases", ()))
        if field.type is bool:
            group.add_argument(*names, dest=field.name, action="store_true", **options)
        else:
            kind = next(t for t in typing.get_args(field.type) or (field.type,) if t is not type(None))
            group.add_argument(*names, dest=field.name, type=kind, default=field.default, **options)
    return parser


def parse_args(argv: list[str] | None = None) -> TrainingConfig:
    """Parse and check the command line, creating nothing; a bad flag exits with status 2 and one line naming it."""
    parser = build_parser()
    try:
        return config_from_flags(argv, parser)
    except ValueError as error:
        parser.error(str(error))


def config_from_flags(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> TrainingConfig:
    """The checked `TrainingConfig` of the command line `argv`; raises a `ValueError` naming a bad flag."""
    parser = parser or build_parser()
    namespace = parser.parse_args(argv)
    apply_recipe(namespace, explicit_flags(parser, argv))
    if namespace.mask_rate is None:  # Fine-tune what was pre-trained, unless asked to go on masking.
        namespace.mask_rate = 0.0 if namespace.pretrained_model_name_or_path else 0.9
    config = TrainingConfig(**vars(namespace))
    validate_args(config)
    return config


def validate_args(config: TrainingConfig) -> None:
    """Check the flags on their own and together, without reading the model source or the data, creating nothing; a
    `ValueError` names the flag, its value and the fix."""
    c = config
    for field in dataclasses.fields(c):  # nan and inf parse as floats: no float flag may be either.
        value, (test, rule) = getattr(c, field.name), field.metadata.get("check") or (None, None)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--{field.name}={value} must be a finite number.")
        if test is not None and value is not None and not test(value):
            raise ValueError(f"--{field.name}={value} {rule}.")
    # Data (checked where `build_train_dataset` checks it; imported late: `--help` needs no `datasets`)
    from .data import check_data_source, check_output_outside_data

    check_data_source(c.dataset_name, c.train_data_dir)
    check_output_outside_data(c.output_dir, c.train_data_dir)
    if c.streaming:  # a stream has no length, no random subset, and is read once: no latent cache, no FID reference
        needs = [name for name in ("dataset_name", "max_train_steps") if getattr(c, name) is None]
        if needs:
            raise ValueError(
                f"--streaming needs --{needs[0]}: it streams a --dataset_name (a Hub dataset or a local folder), whose "
                "length is unknown until it is read, so --max_train_steps sets the run's length."
            )
        for name in ("max_train_samples", "vae_name_or_path", "eval_fid_steps"):
            if getattr(c, name) is not None:
                raise ValueError(
                    f"--{name} cannot be used with --streaming: a stream is read once, in order, as it trains (no "
                    "subset drawn from it, no latent cache, no FID reference statistics over it). Fix: drop one."
                )
    sources = [f"--{n}" for n in ("pretrained_model_name_or_path", "model_config", "model_preset") if getattr(c, n)]
    if len(sources) > 1:
        raise ValueError(
            f"{' and '.join(sources)} both given: a run starts from a pre-trained transformer OR builds a new one from "
            "a config or a preset. Pass only one."
        )
    if c.vae_subfolder is not None and c.vae_name_or_path is None:
        raise ValueError("--vae_subfolder needs --vae_name_or_path (the repo or folder it is a subfolder of).")
    if c.init_from_ema and c.pretrained_model_name_or_path is None:
        raise ValueError(
            "--init_from_ema needs --pretrained_model_name_or_path (the model whose EMA weights to start from)."
        )
    for name, kind in (("mask_block_size", "block"), ("mask_crop_size", "crop")):
        if getattr(c, name) is not None and c.mask_type != kind:
            raise ValueError(
                f"--{name}={getattr(c, name)} only applies to --mask_type {kind} (got --mask_type {c.mask_type}): "
                "drop it."
            )
    # Run: the output folder must be a folder this process can create or write into (its lock, checkpoints and
    # free space are `setup.claim_output_dir`'s, the first write).
    output_dir = existing = Path(c.output_dir)
    if any(len(part.encode()) > 255 for part in output_dir.parts):
        raise ValueError(
            f"--output_dir has a name of over 255 bytes, more than file systems allow ({c.output_dir[:60]!r}...). "
            "Fix: choose a shorter name."
        )
    if output_dir.is_symlink() and not output_dir.exists():
        raise ValueError(
            f"--output_dir={c.output_dir!r} is a link to nothing. Fix: remove the link or choose a folder."
        )
    while not existing.exists():
        existing = existing.parent
    if existing == output_dir and not output_dir.is_dir():
        raise ValueError(f"--output_dir={c.output_dir!r} exists and is not a directory. Fix: choose a folder.")
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"--output_dir={c.output_dir!r} {'is not writable' if existing == output_dir else 'cannot be created'} "
            f"({existing} is not a writable folder). Fix: choose a folder you can write to."
        )
    source = c.pretrained_model_name_or_path
    if source is not None and Path(source).is_dir() and Path(source).resolve() == output_dir.resolve():
        raise ValueError(
            f"--pretrained_model_name_or_path and --output_dir are the same folder ({c.output_dir!r}): the run would "
            "overwrite the model it starts from. Fix: choose another --output_dir."
        )
    if c.overwrite_output_dir and c.resume_from_checkpoint:
        raise ValueError(
            "--overwrite_output_dir deletes the checkpoints --resume_from_checkpoint would resume from: pass one."
        )
    if c.mixed_precision == "fp16" and (c.cpu or not torch.cuda.is_available()):
        raise ValueError("--mixed_precision=fp16 needs a CUDA GPU: use bf16 or no on the CPU.")
    for package in ("tensorboard", "wandb"):
        if c.report_to in (package, "all") and importlib.util.find_spec(package) is None:
            raise ValueError(
                f"--report_to={c.report_to} needs {package}: pip install {package}, or pass --report_to none."
            )
    if c.eval_fid_steps is not None:
        from ..evaluation import find_fid_helper_inception

        try:
            find_fid_helper_inception()
        except Exception as error:
            raise ValueError(
                f"--eval_fid_steps={c.eval_fid_steps} needs the offline Inception network: {error}"
            ) from None
