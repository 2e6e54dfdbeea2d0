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
"""The flags of the training script, the `TrainingConfig` they become, and the checks of the flags alone.

Flag names follow diffusers' `examples/unconditional_image_generation/train_unconditional.py` wherever the idea is
the same. `parse_args` refuses every flag that is wrong on its own or with other flags, creating nothing; what needs
the model source or the data (sizes, channels, labels, memory) is checked by `setup` before the first step.
"""

import argparse
import dataclasses
import importlib.util
import math
from pathlib import Path

from diffusers.optimization import SchedulerType

from ..masking import MASK_KINDS, MASK_ROUNDINGS
from .presets import MODEL_PRESETS, RECIPES, apply_recipe, explicit_flags


PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
VALIDATION_SCHEDULERS = ("ddpm", "ddim", "dpmsolver++")  # see `export.GRID_SCHEDULERS`
REPORT_TO = ("tensorboard", "wandb", "all", "none")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the training script (see `docs/training.md` for recipes)."""
    parser = argparse.ArgumentParser(
        description=(
            "Masked diffusion pre-training (--mask_rate > 0) and fine-tuning (--mask_rate 0) of a MaskedDiTModel "
            "(MaskDM, arXiv 2306.11363). Run it with `accelerate launch` or `python -m diffusers_maskdm.train`."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--dataset_name", type=str, default=None, help="A Hub dataset (anything `load_dataset` takes).")
    data.add_argument("--dataset_config_name", type=str, default=None, help="The config of --dataset_name.")
    data.add_argument(
        "--train_data_dir",
        type=str,
        default=None,
        help="A local image folder (class sub-folders become labels). Without it and --dataset_name: the embedded "
        "Twemoji default (4,009 emoji, CC-BY 4.0).",
    )
    data.add_argument("--image_column", type=str, default=None, help="The image column (default: the first one).")
    data.add_argument("--label_column", type=str, default=None, help="The class-label column.")
    data.add_argument("--cache_dir", type=str, default=None, help="Cache folder of datasets and Hub downloads.")
    data.add_argument("--resolution", type=int, default=32, help="Images are resized and cropped to this side.")
    data.add_argument("--center_crop", action="store_true", help="Crop the centre (default: a random crop).")
    data.add_argument("--random_flip", action="store_true", help="Flip images horizontally at random.")
    data.add_argument(
        "--num_channels", type=int, default=None, choices=(1, 3), help="1 (grayscale) or 3 (RGB); default: the data's."
    )
    data.add_argument("--max_train_samples", type=int, default=None, help="Train on this many images (few-shot).")
    data.add_argument("--ignore_labels", action="store_true", help="Train unconditionally even on labelled data.")
    data.add_argument("--dataloader_num_workers", type=int, default=0, help="DataLoader worker processes.")

    model = parser.add_argument_group("model")
    model.add_argument(
        "--pretrained_model_name_or_path",
        type=str,
        default=None,
        help="Start from this MaskDM transformer: an output folder or checkpoint of this script, or a Hub repo id.",
    )
    model.add_argument("--revision", type=str, default=None, help="Hub revision of --pretrained_model_name_or_path.")
    model.add_argument("--init_from_ema", action="store_true", help="Start from the EMA weights of the source.")
    model.add_argument("--model_config", type=str, default=None, help="A JSON file of MaskedDiTModel arguments.")
    model.add_argument(
        "--model_preset",
        type=str,
        default=None,
        choices=sorted(MODEL_PRESETS),
        help="tiny (CPU), small (512 wide, 13 blocks), base (768, 17), or an official MaskDM network: "
        "maskdm-celeba-64, maskdm-celebahq-256, maskdm-small-256 (see docs/training.md). Default: small.",
    )
    model.add_argument("--gradient_checkpointing", action="store_true", help="Trade compute for memory.")

    masks = parser.add_argument_group("masked pre-training")
    masks.add_argument("--mask_type", type=str, default="block", choices=MASK_KINDS, help="How patches are masked.")
    masks.add_argument(
        "--mask_rate",
        type=float,
        default=None,
        help="Share of patches dropped; 0 = fine-tuning on full images. Default: 0.9 for a new model, 0 with "
        "--pretrained_model_name_or_path (pass --mask_rate 0.9 there to continue masked pre-training).",
    )
    masks.add_argument("--mask_block_size", type=int, default=None, help="Block side in patches (block masks; 2).")
    masks.add_argument("--mask_crop_size", type=int, default=None, help="Visible window side in patches (crop masks).")
    masks.add_argument(
        "--mask_rounding",
        type=str,
        default="nearest",
        choices=MASK_ROUNDINGS,
        help="Masked count: nearest to the rate, or floor (the official code's).",
    )

    diffusion = parser.add_argument_group(
        "diffusion (default: the pre-trained pipeline's, else epsilon / 1000 / linear)"
    )
    diffusion.add_argument("--prediction_type", type=str, default=None, choices=PREDICTION_TYPES, help="The target.")
    diffusion.add_argument("--ddpm_num_steps", type=int, default=None, help="Diffusion steps.")
    diffusion.add_argument(
        "--ddpm_beta_schedule", type=str, default=None, choices=BETA_SCHEDULES, help="The noise schedule."
    )

    optim = parser.add_argument_group("optimisation")
    optim.add_argument(
        "--recipe",
        type=str,
        default=None,
        choices=sorted(RECIPES),
        help="An official MaskDM recipe: sets optimiser, EMA, LR schedule, clipping, noise schedule, resolution and "
        "masks; flags given explicitly still win (see docs/training.md).",
    )
    optim.add_argument("--train_batch_size", type=int, default=16, help="Batch size per process.")
    optim.add_argument("--num_epochs", type=int, default=100, help="Epochs, unless --max_train_steps is given.")
    optim.add_argument("--max_train_steps", type=int, default=None, help="Optimizer steps; overrides --num_epochs.")
    optim.add_argument("--gradient_accumulation_steps", type=int, default=1, help="Micro-batches per step.")
    optim.add_argument("--learning_rate", type=float, default=1e-4, help="Peak learning rate.")
    optim.add_argument(
        "--lr_scheduler",
        default="cosine",
        choices=[s.value for s in SchedulerType],
        help="diffusers' `get_scheduler`.",
    )
    optim.add_argument("--lr_warmup_steps", type=int, default=500, help="Linear warm-up steps.")
    optim.add_argument("--adam_beta1", type=float, default=0.9, help="AdamW beta1.")
    optim.add_argument("--adam_beta2", type=float, default=0.999, help="AdamW beta2.")
    optim.add_argument("--adam_weight_decay", type=float, default=1e-6, help="On weight matrices only.")
    optim.add_argument("--adam_epsilon", type=float, default=1e-8, help="AdamW epsilon.")
    optim.add_argument("--max_grad_norm", type=float, default=1.0, help="Gradient clipping norm.")
    optim.add_argument("--use_ema", action="store_true", help="Keep an EMA of the weights (diffusers EMAModel).")
    optim.add_argument(
        "--ema_decay", "--ema_max_decay", dest="ema_decay", type=float, default=0.9999, help="Maximum EMA decay."
    )
    optim.add_argument("--ema_inv_gamma", type=float, default=1.0, help="EMA warm-up inverse gamma.")
    optim.add_argument("--ema_power", type=float, default=3 / 4, help="EMA warm-up power.")
    optim.add_argument(
        "--class_dropout_prob", type=float, default=0.1, help="Chance of the null label (classifier-free guidance)."
    )
    optim.add_argument(
        "--max_consecutive_nonfinite_steps",
        type=int,
        default=10,
        help="Non-finite losses are skipped; stop (after saving) when this many come in a row.",
    )
    optim.add_argument("--seed", type=int, default=0, help="Seeds the model, data order, noise and masks.")

    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", type=str, default="maskdm-model", help="Checkpoints, logs and the pipeline.")
    run.add_argument(
        "--overwrite_output_dir",
        action="store_true",
        help="Start afresh in an --output_dir that holds another run's checkpoints (they are deleted).",
    )
    run.add_argument("--logging_dir", type=str, default="logs", help="TensorBoard folder, inside --output_dir.")
    run.add_argument("--report_to", type=str, default="tensorboard", choices=REPORT_TO, help="Where to log.")
    run.add_argument(
        "--mixed_precision", type=str, default=None, choices=("no", "fp16", "bf16"), help="Default: accelerate's."
    )
    run.add_argument("--cpu", action="store_true", help="Train on the CPU even when a GPU is there.")
    run.add_argument("--num_cpu_threads", type=int, default=None, help="Threads per process (default: all cores).")
    run.add_argument("--checkpointing_steps", type=int, default=500, help="Save a checkpoint every N steps.")
    run.add_argument("--checkpoints_total_limit", type=int, default=None, help="Keep at most N checkpoints.")
    run.add_argument(
        "--resume_from_checkpoint", type=str, default=None, help="A checkpoint folder, or `latest` (newest intact)."
    )
    run.add_argument("--validation_steps", type=int, default=None, help="Save a sample grid every N steps.")
    run.add_argument("--num_validation_images", type=int, default=16, help="Images in a sample grid.")
    run.add_argument("--validation_inference_steps", type=int, default=50, help="Sampling steps of the sample grids.")
    run.add_argument(
        "--validation_scheduler",
        default="ddpm",
        choices=VALIDATION_SCHEDULERS,
        help="Sampler of the sample grids: ddpm (ancestral), ddim (eta 0, no clipping) or dpmsolver++.",
    )
    run.add_argument("--eval_fid_steps", type=int, default=None, help="Compute FID every N steps (main process).")
    run.add_argument("--eval_fid_num_images", type=int, default=1000, help="The N of FID-N.")
    run.add_argument("--push_to_hub", action="store_true", help="Push the final pipeline and its card to the Hub.")
    run.add_argument("--hub_model_id", type=str, default=None, help="Repo id (default: the --output_dir name).")
    run.add_argument("--hub_token", type=str, default=None, help="Hub token (default: the logged-in one).")
    run.add_argument("--hub_private_repo", action="store_true", help="Create the repo as private.")
    return parser


@dataclasses.dataclass
class TrainingConfig:
    """What a training run is asked to do: the flags of `build_parser`, typed, checked by `validate_args`."""

    # Data
    dataset_name: str | None
    dataset_config_name: str | None
    train_data_dir: str | None
    image_column: str | None
    label_column: str | None
    cache_dir: str | None
    resolution: int
    center_crop: bool
    random_flip: bool
    num_channels: int | None
    max_train_samples: int | None
    ignore_labels: bool
    dataloader_num_workers: int
    # Model
    pretrained_model_name_or_path: str | None
    revision: str | None
    init_from_ema: bool
    model_config: str | None
    model_preset: str | None
    gradient_checkpointing: bool
    # Masks: `mask_rate` 0 means fine-tuning on full images
    mask_type: str
    mask_rate: float
    mask_block_size: int | None
    mask_crop_size: int | None
    mask_rounding: str
    # Diffusion: `None` takes the pre-trained pipeline's setting, else the default (see `setup`)
    prediction_type: str | None
    ddpm_num_steps: int | None
    ddpm_beta_schedule: str | None
    # Optimisation; `recipe_values`: the resolved values of `--recipe` (`{}` without one)
    recipe: str | None
    recipe_values: dict
    train_batch_size: int
    num_epochs: int
    max_train_steps: int | None
    gradient_accumulation_steps: int
    learning_rate: float
    lr_scheduler: str
    lr_warmup_steps: int
    adam_beta1: float
    adam_beta2: float
    adam_weight_decay: float
    adam_epsilon: float
    max_grad_norm: float
    use_ema: bool
    ema_decay: float
    ema_inv_gamma: float
    ema_power: float
    class_dropout_prob: float
    max_consecutive_nonfinite_steps: int
    seed: int
    # Run
    output_dir: str
    overwrite_output_dir: bool
    logging_dir: str
    report_to: str
    mixed_precision: str | None
    cpu: bool
    num_cpu_threads: int | None
    checkpointing_steps: int
    checkpoints_total_limit: int | None
    resume_from_checkpoint: str | None
    validation_steps: int | None
    num_validation_images: int
    validation_inference_steps: int
    validation_scheduler: str
    eval_fid_steps: int | None
    eval_fid_num_images: int
    push_to_hub: bool
    hub_model_id: str | None
    hub_token: str | None
    hub_private_repo: bool

    @property
    def stage(self) -> str:
        """`"pretrain"` (masked) or `"finetune"` (full images)."""
        return "pretrain" if self.mask_rate > 0 else "finetune"


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


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def validate_args(config: TrainingConfig) -> None:
    """
    Check the flags on their own and together, without reading the model source or the data, creating nothing.

    Raises:
        `ValueError`: naming the flag, its value and the fix.
    """
    c = config
    for field in dataclasses.fields(c):  # nan and inf parse as floats: no float flag may be either.
        value = getattr(c, field.name)
        _require(
            not isinstance(value, float) or math.isfinite(value), f"--{field.name}={value} must be a finite number."
        )
    # Data (checked where `build_train_dataset` checks it; imported late: `--help` needs no `datasets`)
    from .data import check_data_source, check_output_outside_data

    check_data_source(c.dataset_name, c.train_data_dir)
    check_output_outside_data(c.output_dir, c.train_data_dir)
    _require(c.resolution >= 2, f"--resolution={c.resolution} must be at least 2 (e.g. 32).")
    # Model source
    sources = [
        f"--{name}"
        for name in ("pretrained_model_name_or_path", "model_config", "model_preset")
        if getattr(c, name) is not None
    ]
    _require(
        len(sources) <= 1,
        f"{' and '.join(sources)} both given: a run starts from a pre-trained transformer OR builds a new one from a "
        "config or a preset. Pass only one.",
    )
    _require(
        not c.init_from_ema or c.pretrained_model_name_or_path is not None,
        "--init_from_ema needs --pretrained_model_name_or_path (the model whose EMA weights to start from).",
    )
    # Masks
    _require(
        0.0 <= c.mask_rate < 1.0,
        f"--mask_rate={c.mask_rate} must be in [0, 1): 0.9 for masked pre-training, 0 for fine-tuning.",
    )
    for flag, kind in (("mask_block_size", "block"), ("mask_crop_size", "crop")):
        value = getattr(c, flag)
        _require(
            value is None or c.mask_type == kind,
            f"--{flag}={value} only applies to --mask_type {kind} (got --mask_type {c.mask_type}): drop it.",
        )
    # Positive integers and numbers in ranges
    positive = (
        "train_batch_size num_epochs gradient_accumulation_steps max_consecutive_nonfinite_steps checkpointing_steps "
        "num_validation_images validation_inference_steps eval_fid_num_images learning_rate adam_epsilon "
        "max_grad_norm ema_inv_gamma ema_power"
    )
    for flag in positive.split():
        _require(getattr(c, flag) > 0, f"--{flag}={getattr(c, flag)} must be positive.")
    optional_positive = (
        "max_train_samples max_train_steps ddpm_num_steps mask_block_size mask_crop_size checkpoints_total_limit "
        "validation_steps eval_fid_steps num_cpu_threads"
    )
    for flag in optional_positive.split():
        value = getattr(c, flag)
        _require(value is None or value >= 1, f"--{flag}={value} must be a positive integer (or left out).")
    for flag in ("dataloader_num_workers", "lr_warmup_steps", "adam_weight_decay", "seed"):
        _require(getattr(c, flag) >= 0, f"--{flag}={getattr(c, flag)} must be >= 0.")
    for flag in ("adam_beta1", "adam_beta2", "class_dropout_prob"):
        _require(0.0 <= getattr(c, flag) < 1.0, f"--{flag}={getattr(c, flag)} must be in [0, 1).")
    _require(0.0 < c.ema_decay < 1.0, f"--ema_decay={c.ema_decay} must be in (0, 1), e.g. 0.9999.")
    _require(c.eval_fid_num_images >= 2, f"--eval_fid_num_images={c.eval_fid_num_images} must be at least 2.")
    # Run
    output_dir = Path(c.output_dir)
    _require(
        not output_dir.exists() or output_dir.is_dir(),
        f"--output_dir={c.output_dir!r} exists and is not a directory. Fix: choose a folder.",
    )
    _require(
        not (c.overwrite_output_dir and c.resume_from_checkpoint),
        "--overwrite_output_dir deletes the checkpoints --resume_from_checkpoint would resume from: pass one.",
    )
    _require(
        c.mixed_precision != "fp16" or (_cuda_available() and not c.cpu),
        "--mixed_precision=fp16 needs a CUDA GPU: use bf16 or no on the CPU.",
    )
    for tracker, package in (("tensorboard", "tensorboard"), ("wandb", "wandb")):
        _require(
            c.report_to not in (tracker, "all") or importlib.util.find_spec(package) is not None,
            f"--report_to={c.report_to} needs {package}: pip install {package}, or pass --report_to none.",
        )
    if c.eval_fid_steps is not None:
        from ..evaluation import find_fid_helper_inception

        try:
            find_fid_helper_inception()
        except Exception as error:
            raise ValueError(
                f"--eval_fid_steps={c.eval_fid_steps} needs the offline Inception network: {error}"
            ) from None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
