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
"""Command-line arguments of `examples/train_masked_pretrain.py`, and their checks before anything is trained.

Flag names follow diffusers' `examples/unconditional_image_generation/train_unconditional.py` wherever the idea is
the same. `parse_args` refuses every bad combination it can know of before a model or data set is built, with a
message that names the flag, the value and the fix; checks that need the data (channels, class labels) run in
`run_training` before the first step.
"""

import argparse
import importlib.util
import os
from pathlib import Path

from diffusers import DDPMScheduler
from diffusers.optimization import SchedulerType

from ..masking import MASK_KINDS, MASK_ROUNDINGS, MaskGenerator
from .checkpointing import check_checkpoint, check_output_dir
from .model_source import read_model_config_file, resolve_pretrained_transformer
from .presets import MODEL_PRESETS, RECIPES, apply_recipe, explicit_flags, preset_config


PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
MIXED_PRECISIONS = ("no", "fp16", "bf16")
REPORT_TO = ("tensorboard", "wandb", "all", "none")
# Defaults of the diffusion flags when neither the user nor a pre-trained pipeline sets them.
DIFFUSION_DEFAULTS = {"prediction_type": "epsilon", "ddpm_num_steps": 1000, "ddpm_beta_schedule": "linear"}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the training script (see `docs/training.md` for recipes)."""
    parser = argparse.ArgumentParser(
        description=(
            "Masked diffusion pre-training (--mask_rate > 0) and fine-tuning (--mask_rate 0) of a MaskedDiTModel "
            "(MaskDM, arXiv 2306.11363). Run it with `accelerate launch`."
        )
    )

    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset_name", type=str, default=None, help="A Hub dataset (or anything `load_dataset` takes)."
    )
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
    data.add_argument(
        "--max_train_samples", type=int, default=None, help="Train on a subset of this many images (few-shot)."
    )
    data.add_argument(
        "--ignore_labels", action="store_true", help="Train an unconditional model even when the data has labels."
    )
    data.add_argument("--dataloader_num_workers", type=int, default=0, help="DataLoader worker processes.")

    model = parser.add_argument_group("model")
    model.add_argument(
        "--pretrained_model_name_or_path",
        type=str,
        default=None,
        help="Start from this MaskDM transformer: an output folder or checkpoint of this script, or a Hub repo id.",
    )
    model.add_argument("--revision", type=str, default=None, help="Hub revision of --pretrained_model_name_or_path.")
    model.add_argument(
        "--init_from_ema", action="store_true", help="Start from the EMA weights of --pretrained_model_name_or_path."
    )
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
        "--mask_rate", type=float, default=0.9, help="Share of patches dropped; 0 = fine-tune on full images."
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

    diffusion = parser.add_argument_group("diffusion")
    diffusion.add_argument(
        "--prediction_type",
        type=str,
        default=None,
        choices=PREDICTION_TYPES,
        help="What the model predicts (default: the pre-trained pipeline's, else epsilon).",
    )
    diffusion.add_argument("--ddpm_num_steps", type=int, default=None, help="Diffusion steps (default 1000).")
    diffusion.add_argument(
        "--ddpm_beta_schedule", type=str, default=None, choices=BETA_SCHEDULES, help="Noise schedule (default linear)."
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
        type=str,
        default="cosine",
        choices=[s.value for s in SchedulerType],
        help="diffusers' `get_scheduler` name.",
    )
    optim.add_argument("--lr_warmup_steps", type=int, default=500, help="Linear warm-up steps.")
    optim.add_argument("--adam_beta1", type=float, default=0.9)
    optim.add_argument("--adam_beta2", type=float, default=0.999)
    optim.add_argument(
        "--adam_weight_decay", type=float, default=1e-6, help="On weight matrices only (not norms, biases, tables)."
    )
    optim.add_argument("--adam_epsilon", type=float, default=1e-8)
    optim.add_argument("--max_grad_norm", type=float, default=1.0, help="Gradient clipping norm.")
    optim.add_argument("--use_ema", action="store_true", help="Keep an EMA of the weights (diffusers EMAModel).")
    optim.add_argument(
        "--ema_decay", "--ema_max_decay", dest="ema_decay", type=float, default=0.9999, help="Maximum EMA decay."
    )
    optim.add_argument("--ema_inv_gamma", type=float, default=1.0, help="EMA warm-up inverse gamma.")
    optim.add_argument("--ema_power", type=float, default=3 / 4, help="EMA warm-up power.")
    optim.add_argument(
        "--class_dropout_prob",
        type=float,
        default=0.1,
        help="With class labels: chance of the null label (for classifier-free guidance).",
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
    run.add_argument("--logging_dir", type=str, default="logs", help="TensorBoard folder, inside --output_dir.")
    run.add_argument("--report_to", type=str, default="tensorboard", choices=REPORT_TO, help="Where to log.")
    run.add_argument(
        "--mixed_precision", type=str, default=None, choices=MIXED_PRECISIONS, help="Default: accelerate's config."
    )
    run.add_argument("--cpu", action="store_true", help="Train on the CPU even when a GPU is there.")
    run.add_argument(
        "--num_cpu_threads",
        type=int,
        default=None,
        help="Threads per process on the CPU. Default: the CPUs this run may use, shared by its local processes.",
    )
    run.add_argument("--checkpointing_steps", type=int, default=500, help="Save a checkpoint every N steps.")
    run.add_argument("--checkpoints_total_limit", type=int, default=None, help="Keep at most N checkpoints.")
    run.add_argument(
        "--resume_from_checkpoint",
        type=str,
        default=None,
        help="A checkpoint folder, or `latest` (the newest complete).",
    )
    run.add_argument(
        "--validation_steps", type=int, default=None, help="Save a sample grid every N steps (always at the end)."
    )
    run.add_argument("--num_validation_images", type=int, default=16, help="Images in a sample grid.")
    run.add_argument("--validation_inference_steps", type=int, default=50, help="DDIM steps of the sample grids.")
    run.add_argument("--eval_fid_steps", type=int, default=None, help="Compute FID every N steps (main process).")
    run.add_argument("--eval_fid_num_images", type=int, default=1000, help="The N of FID-N.")
    run.add_argument("--push_to_hub", action="store_true", help="Push the final pipeline and its card to the Hub.")
    run.add_argument("--hub_model_id", type=str, default=None, help="Repo id (default: the --output_dir name).")
    run.add_argument("--hub_private_repo", action="store_true", help="Create the repo as private.")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line; a bad combination exits with `parser.error` (status 2) naming the flag."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        apply_recipe(args, explicit_flags(parser, argv))
        validate_args(args)
    except ValueError as error:
        parser.error(str(error))
    return args


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def validate_args(args: argparse.Namespace) -> None:
    """
    Check the arguments before anything is built, and fill in what follows from them.

    Sets `args.stage` (`"pretrain"` or `"finetune"`), `args.patch_size`, `args.pretrained_source` (a
    `TransformerSource` or `None`), the unset diffusion flags (from a pre-trained pipeline or the defaults) and, when
    starting from a pre-trained transformer or a JSON config, `args.num_channels`. Creates `--output_dir`.

    Raises:
        `ValueError`: naming the flag, its value and the fix.
    """
    # Data
    _require(
        args.dataset_name is None or args.train_data_dir is None,
        f"--dataset_name={args.dataset_name!r} and --train_data_dir={args.train_data_dir!r} both given: pass one "
        "(or neither, for the embedded Twemoji default).",
    )
    if args.train_data_dir is not None:
        _require(
            os.path.isdir(args.train_data_dir),
            f"--train_data_dir={args.train_data_dir!r} is not a directory: pass a folder of images.",
        )
    _require(args.resolution >= 2, f"--resolution={args.resolution} must be at least 2 (e.g. 32).")
    _require(
        args.max_train_samples is None or args.max_train_samples >= 1,
        f"--max_train_samples={args.max_train_samples} must be a positive number of images.",
    )
    _require(args.dataloader_num_workers >= 0, f"--dataloader_num_workers={args.dataloader_num_workers} must be >= 0.")

    # Model source
    sources = [
        flag
        for flag, value in (
            ("--pretrained_model_name_or_path", args.pretrained_model_name_or_path),
            ("--model_config", args.model_config),
            ("--model_preset", args.model_preset),
        )
        if value is not None
    ]
    _require(
        len(sources) <= 1,
        f"{' and '.join(sources)} both given: a run starts from a pre-trained transformer OR builds a new one from a "
        "config or a preset. Pass only one.",
    )
    _require(
        not args.init_from_ema or args.pretrained_model_name_or_path is not None,
        "--init_from_ema needs --pretrained_model_name_or_path (the model whose EMA weights to start from).",
    )
    args.pretrained_source = None
    if args.pretrained_model_name_or_path is not None:
        args.pretrained_source = resolve_pretrained_transformer(
            args.pretrained_model_name_or_path, args.init_from_ema, revision=args.revision, cache_dir=args.cache_dir
        )
        config = args.pretrained_source.read_config()
        _require(
            config.get("sample_size") == args.resolution,
            f"--resolution={args.resolution} but the transformer of --pretrained_model_name_or_path="
            f"{args.pretrained_model_name_or_path!r} was trained at sample_size={config.get('sample_size')}: pass "
            f"--resolution {config.get('sample_size')}.",
        )
        args.patch_size = config.get("patch_size", 2)
        if args.num_channels is None:
            args.num_channels = config.get("in_channels")  # The data is converted to what the model takes.
        _fill_diffusion_defaults(args, args.pretrained_source.scheduler_config())
    elif args.model_config is not None:
        config = read_model_config_file(args.model_config)
        args.patch_size = config.get("patch_size", 2)
        if args.num_channels is None:
            args.num_channels = config.get("in_channels")
        _require(
            config.get("sample_size", args.resolution) == args.resolution,
            f"--model_config={args.model_config!r} sets sample_size={config.get('sample_size')} but --resolution="
            f"{args.resolution}: make them agree (or drop sample_size from the file).",
        )
        _fill_diffusion_defaults(args, None)
    else:
        try:
            args.patch_size = preset_config(args.model_preset or "small", args.resolution)["patch_size"]
        except ValueError as error:
            raise ValueError(f"--resolution={args.resolution} does not fit --model_preset: {error}") from error
        _fill_diffusion_defaults(args, None)
    _require(
        isinstance(args.patch_size, int) and args.patch_size >= 1 and args.resolution % args.patch_size == 0,
        f"--resolution={args.resolution} is not a multiple of the model's patch_size={args.patch_size}.",
    )

    # Masks
    _require(
        0.0 <= args.mask_rate < 1.0,
        f"--mask_rate={args.mask_rate} must be in [0, 1): 0.9 for masked pre-training, 0 for fine-tuning.",
    )
    _require(
        args.mask_block_size is None or args.mask_type == "block",
        f"--mask_block_size={args.mask_block_size} only applies to --mask_type block (got --mask_type "
        f"{args.mask_type}): drop it.",
    )
    _require(
        args.mask_crop_size is None or args.mask_type == "crop",
        f"--mask_crop_size={args.mask_crop_size} only applies to --mask_type crop (got --mask_type {args.mask_type}): "
        "drop it.",
    )
    args.stage = "pretrain" if args.mask_rate > 0 else "finetune"
    if args.mask_rate > 0:
        grid_size = args.resolution // args.patch_size
        try:
            generator = MaskGenerator(
                args.mask_type,
                args.mask_rate,
                block_size=args.mask_block_size or 2,
                crop_size=args.mask_crop_size,
                rounding=args.mask_rounding,
            )
            generator.validate(grid_size)
        except ValueError as error:
            raise ValueError(
                f"the mask flags (--mask_type {args.mask_type} --mask_rate {args.mask_rate}"
                + (f" --mask_block_size {args.mask_block_size}" if args.mask_block_size is not None else "")
                + (f" --mask_crop_size {args.mask_crop_size}" if args.mask_crop_size is not None else "")
                + f") do not fit --resolution {args.resolution} with patch size {args.patch_size} "
                f"({grid_size}x{grid_size} patches): {error}"
            ) from error

    # Diffusion
    _require(args.ddpm_num_steps >= 1, f"--ddpm_num_steps={args.ddpm_num_steps} must be a positive integer.")

    # Optimisation
    for flag in ("train_batch_size", "num_epochs", "gradient_accumulation_steps", "max_consecutive_nonfinite_steps"):
        value = getattr(args, flag)
        _require(value >= 1, f"--{flag}={value} must be a positive integer.")
    _require(
        args.max_train_steps is None or args.max_train_steps >= 1,
        f"--max_train_steps={args.max_train_steps} must be a positive integer.",
    )
    _require(args.learning_rate > 0, f"--learning_rate={args.learning_rate} must be positive (e.g. 1e-4).")
    _require(args.lr_warmup_steps >= 0, f"--lr_warmup_steps={args.lr_warmup_steps} must be >= 0.")
    for flag in ("adam_beta1", "adam_beta2"):
        value = getattr(args, flag)
        _require(0.0 <= value < 1.0, f"--{flag}={value} must be in [0, 1).")
    _require(args.adam_weight_decay >= 0, f"--adam_weight_decay={args.adam_weight_decay} must be >= 0.")
    _require(args.adam_epsilon > 0, f"--adam_epsilon={args.adam_epsilon} must be positive.")
    _require(args.max_grad_norm > 0, f"--max_grad_norm={args.max_grad_norm} must be positive (e.g. 1.0).")
    _require(0.0 < args.ema_decay < 1.0, f"--ema_decay={args.ema_decay} must be in (0, 1), e.g. 0.9999.")
    _require(args.ema_inv_gamma > 0, f"--ema_inv_gamma={args.ema_inv_gamma} must be positive.")
    _require(args.ema_power > 0, f"--ema_power={args.ema_power} must be positive.")
    _require(
        0.0 <= args.class_dropout_prob < 1.0, f"--class_dropout_prob={args.class_dropout_prob} must be in [0, 1)."
    )
    _require(args.seed >= 0, f"--seed={args.seed} must be >= 0.")

    # Run
    check_output_dir(args.output_dir)
    _require(
        args.mixed_precision != "fp16" or (_cuda_available() and not args.cpu),
        "--mixed_precision=fp16 needs a CUDA GPU: use bf16 or no on the CPU.",
    )
    for flag in ("checkpointing_steps", "num_validation_images", "validation_inference_steps", "eval_fid_num_images"):
        value = getattr(args, flag)
        _require(value >= 1, f"--{flag}={value} must be a positive integer.")
    for flag in ("checkpoints_total_limit", "validation_steps", "eval_fid_steps"):
        value = getattr(args, flag)
        _require(value is None or value >= 1, f"--{flag}={value} must be a positive integer (or left out).")
    _require(args.eval_fid_num_images >= 2, f"--eval_fid_num_images={args.eval_fid_num_images} must be at least 2.")
    if args.report_to in ("tensorboard", "all"):
        _require(
            importlib.util.find_spec("tensorboard") is not None,
            f"--report_to={args.report_to} needs tensorboard: pip install tensorboard, or pass --report_to none.",
        )
    if args.report_to in ("wandb", "all"):
        _require(
            importlib.util.find_spec("wandb") is not None,
            f"--report_to={args.report_to} needs wandb: pip install wandb, or pass --report_to tensorboard.",
        )
    if args.eval_fid_steps is not None:
        from ..evaluation import find_fid_helper_inception

        try:
            find_fid_helper_inception()
        except Exception as error:
            raise ValueError(
                f"--eval_fid_steps={args.eval_fid_steps} needs the offline Inception network: {error}"
            ) from error
    if args.resume_from_checkpoint not in (None, "latest"):
        path = Path(args.resume_from_checkpoint)
        if not path.exists() and not path.is_absolute():
            path = Path(args.output_dir) / args.resume_from_checkpoint
        problem = check_checkpoint(path) if path.exists() else "it does not exist"
        _require(
            problem is None,
            f"--resume_from_checkpoint={args.resume_from_checkpoint!r} cannot be resumed from: {problem}. Fix: pass "
            "a complete checkpoint-<step> folder, or `latest`.",
        )


def _fill_diffusion_defaults(args: argparse.Namespace, scheduler_config: dict | None) -> None:
    """Unset diffusion flags take the pre-trained pipeline's scheduler settings, else `DIFFUSION_DEFAULTS`."""
    from_pipeline = {
        "prediction_type": "prediction_type",
        "ddpm_num_steps": "num_train_timesteps",
        "ddpm_beta_schedule": "beta_schedule",
    }
    for flag, default in DIFFUSION_DEFAULTS.items():
        if getattr(args, flag) is None:
            value = (scheduler_config or {}).get(from_pipeline[flag], default)
            setattr(args, flag, value)


def build_noise_scheduler(args: argparse.Namespace) -> DDPMScheduler:
    """The training `DDPMScheduler` of the diffusion flags (also saved with the final pipeline)."""
    return DDPMScheduler(
        num_train_timesteps=args.ddpm_num_steps,
        beta_schedule=args.ddpm_beta_schedule,
        prediction_type=args.prediction_type,
    )
