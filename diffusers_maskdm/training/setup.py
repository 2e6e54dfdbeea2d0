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
"""The first phase of a run, `setup`: everything built, and everything checked, before the first step. Nothing is
written before the output folder is claimed (the last check), so a refused run leaves nothing."""

import errno
import logging
import math
import os
import shutil
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import (
    DataLoaderConfiguration,
    DistributedDataParallelKwargs,
    InitProcessGroupKwargs,
    ProjectConfiguration,
    broadcast_object_list,
    set_seed,
)
from diffusers import AutoencoderKL, DDPMScheduler
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from huggingface_hub import create_repo


try:
    import fcntl
except ImportError:  # Windows: no advisory locks, one run per folder is then the user's to keep.
    fcntl = None

from ..caching import data_source_id
from ..masking import MaskGenerator
from ..models import MaskedDiTModel
from ..pipelines.pipeline_masked_ddpm import vae_scale_factor
from .args import BETA_SCHEDULES, DIFFUSION_STEPS, PREDICTION_TYPES, TrainingConfig
from .checkpointing import list_checkpoints, named_checkpoint, register_checkpoint_hooks
from .data import build_train_dataloader, build_train_dataset
from .latents import LatentDataset, load_vae
from .model_source import new_model_config, read_model_config_file, resolve_pretrained_transformer
from .presets import preset_config, recipe_summary
from .streaming import build_streaming_dataset


logger = get_logger(__name__)

LOCK_FILENAME = ".lock"
# Embeddings and position tables: decaying them towards zero only erases what they encode (ViT / U-ViT practice).
NO_DECAY_NAME_SUFFIXES = ("pos_embed", "class_embedding.weight", "mask_token")
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 (AVX512-BF16, AMX) and Arm (FEAT_BF16) cpuinfo flags
# The flags `build_train_dataset` takes as they are (its arguments of the same names).
DATA_FLAGS = ("dataset_name", "dataset_config_name", "train_data_dir", "image_column", "label_column", "cache_dir")
DATA_FLAGS += ("resolution", "center_crop", "random_flip", "max_train_samples", "seed")


@dataclass
class Run:
    """What `setup` builds and the later phases (`resume`, `train`, `export`) use."""

    config: TrainingConfig
    accelerator: Accelerator
    model: torch.nn.Module  # prepared by accelerate (wrapped for several processes)
    ema_model: EMAModel | None
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any
    dataloader: Any
    noise_scheduler: DDPMScheduler
    mask_generator: MaskGenerator | None
    max_train_steps: int
    repo_id: str | None = None
    lock: IO | None = None  # held by the main process until the run ends; the OS drops it if the process dies
    vae: AutoencoderKL | None = None  # latent-space training: the frozen VAE, which decodes the samples

    @property
    def transformer(self) -> MaskedDiTModel:
        return self.accelerator.unwrap_model(self.model)

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def grid_options(self) -> tuple:  # the arguments of `export.sample_grid` after the pipeline
        c = self.config
        return c.num_validation_images, c.validation_inference_steps, c.seed, c.validation_scheduler


def setup(config: TrainingConfig) -> Run:
    """Build the run `config` asks for, checking all that can be checked before the first step: a `ValueError` names
    the flag, the value and the fix, and nothing has been written then."""
    # 1. Accelerator
    accelerator = _build_accelerator(config)
    logger.info(accelerator.state, main_process_only=False)
    if config.recipe:
        logger.info(recipe_summary(config))
    set_seed(config.seed)

    # 2. The model source and the VAE (a pre-trained latent pipeline brings its own), and the checks that need them
    source = scheduler_config = None
    if config.pretrained_model_name_or_path is not None:
        source = resolve_pretrained_transformer(
            config.pretrained_model_name_or_path, config.init_from_ema, config.revision, config.cache_dir
        )
        model_config, scheduler_config = source.read_config(), source.scheduler_config()
    vae = load_run_vae(config, source)
    size = _model_sample_size(config, vae)  # the side of what the model denoises: images or latents
    if config.model_config is not None:
        model_config = {"sample_size": size, **read_model_config_file(config.model_config)}
    elif source is None:
        try:
            model_config = preset_config(config.model_preset or "small", size)
        except ValueError as error:
            latents = f" (latents of side {size} with the VAE)" if vae else ""
            raise ValueError(f"--resolution={config.resolution}{latents} fits no model preset: {error}") from None
    noise_scheduler = build_noise_scheduler(config, scheduler_config)
    plan = (config, model_config, accelerator.device, size, accelerator.mixed_precision)
    mask_generator, checkpoint_bytes = _check_model_plan(*plan)

    # 3. Data, then the model; a given model (or the VAE) decides the channels the images are converted to.
    given = config.pretrained_model_name_or_path or config.model_config
    channels = (
        vae.config.in_channels if vae else config.num_channels or (model_config.get("in_channels") if given else None)
    )
    dataset = prepare_data(config, accelerator, vae, channels)
    num_classes = None if config.ignore_labels else dataset.num_classes
    if source is None:
        file_config = model_config if config.model_config else None  # read once, above
        model_config = new_model_config(size, dataset.num_channels, num_classes, file_config, config.model_preset)
    _check_model_fits_data(config, model_config, dataset.num_channels, num_classes, latent=vae is not None)
    if source is not None:
        logger.info("Starting from the %s weights of %s", "EMA" if source.is_ema else "raw", source.name)
    model = source.load() if source is not None else MaskedDiTModel.from_config(model_config)
    if config.gradient_checkpointing:
        model.enable_gradient_checkpointing()

    # 4. The Hub repo and the output folder: the last checks, and the first writes
    repo_id = _on_main(accelerator, _create_hub_repo, config) if config.push_to_hub else None
    lock = _on_main(accelerator, claim_output_dir, config, 2 * checkpoint_bytes)

    # 5. Optimizer, data loader, schedule, EMA
    betas = (config.adam_beta1, config.adam_beta2)
    optimizer = build_optimizer(model, config.learning_rate, betas, config.adam_weight_decay, config.adam_epsilon)
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
    options = dataloader_options(config.dataloader_num_workers, accelerator.device, local_processes)
    if config.streaming:  # each process reads its own part: accelerate would send it the main process's batches
        options["persistent_workers"] = False  # new workers each epoch, with the dataset's epoch and position
        parts, shards = accelerator.num_processes * max(1, options["num_workers"]), dataset.stream.num_shards
        if shards % parts:
            logger.warning(
                "--streaming: the stream's %d shards do not divide into %d parts (processes x DataLoader workers), so "
                "every part reads the whole stream and keeps every %d-th example. Fix: a number of processes and "
                "--dataloader_num_workers whose product divides %d.",
                *(shards, parts, parts, shards),
            )
        loader = torch.utils.data.DataLoader(dataset, config.train_batch_size, **options)
        model, optimizer = accelerator.prepare(model, optimizer)
    else:
        loader = build_train_dataloader(dataset, config.train_batch_size, seed=config.seed, **options)
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps = config.max_train_steps or math.ceil(config.num_epochs * len(loader) / config.gradient_accumulation_steps)
    options = dict(num_warmup_steps=config.lr_warmup_steps, num_training_steps=steps)
    lr_scheduler = accelerator.prepare(get_scheduler(config.lr_scheduler, optimizer, **options))
    ema_model = None
    if config.use_ema:
        transformer = accelerator.unwrap_model(model)
        options = dict(decay=config.ema_decay, inv_gamma=config.ema_inv_gamma, power=config.ema_power)
        options |= dict(use_ema_warmup=True, model_cls=MaskedDiTModel, model_config=transformer.config)
        ema_model = EMAModel(transformer.parameters(), foreach=True, **options)  # copies on the parameters' device
    register_checkpoint_hooks(accelerator, ema_model)
    if config.report_to != "none":
        tracked = {k: v for k, v in asdict(config).items() if type(v) in (int, float, str, bool) and k != "hub_token"}
        accelerator.init_trackers("train_masked_pretrain", config=tracked)
    built = (model, ema_model, optimizer, lr_scheduler, loader, noise_scheduler, mask_generator, steps, repo_id, lock)
    return Run(config, accelerator, *built, vae)


def load_run_vae(config: TrainingConfig, source=None) -> AutoencoderKL | None:
    """`--vae_name_or_path`, else the VAE of the pre-trained latent pipeline `source`, else `None` (pixel space)."""
    vae_source = config.vae_name_or_path or (source.vae_folder() if source is not None else None)
    return load_vae(vae_source, config.vae_subfolder, cache_dir=config.cache_dir) if vae_source else None


def prepare_data(config: TrainingConfig, state, vae: AutoencoderKL | None, channels: int | None = None):
    """The training data of `config` (`state`: the `Accelerator` or `PartialState`). The images are read by the main
    process first (the others then find the datasets cache), then, in a local folder or with a VAE, every image is
    decoded once to check it, each process its share; with a VAE, their latents are encoded into the cache's shards,
    each process its share (`LatentDataset`). `python -m diffusers_maskdm.prepare` runs it ahead of training."""
    options = {name: getattr(config, name) for name in DATA_FLAGS} | {"num_channels": channels}
    if config.streaming:
        if vae is not None:
            raise ValueError(
                "--streaming cannot train in latent space (this pre-trained pipeline has a VAE): a stream is read "
                "once, as it trains, and latents are encoded ahead into a cache. Fix: drop --streaming."
            )
        options = {key: value for key, value in options.items() if key not in ("train_data_dir", "max_train_samples")}
        return build_streaming_dataset(**options, rank=state.process_index, num_processes=state.num_processes)
    verify = vae is not None or config.dataset_name is None  # every image checked, each process its share
    with state.main_process_first():  # the datasets cache is built once, by the main process
        dataset = build_train_dataset(**options, verify_images=verify and state.num_processes == 1)
    if verify and state.num_processes > 1:
        dataset = build_train_dataset(**options, verify_images=True)
    if vae is None:
        return dataset
    if not config.center_crop:  # a crop drawn per step cannot be cached
        logger.info("Latent space: the centre crop of each image is encoded (cached latents have no random crop).")
    vae.to(state.device)
    source = (config.dataset_name, config.dataset_config_name, config.train_data_dir)
    data_id = f"{_on_main(state, data_source_id, *source, share=True)}:"  # a folder's files are listed once
    data_id += f"{config.image_column or ''}|subset={config.max_train_samples or 'all'}:{config.seed}"
    return LatentDataset(dataset, vae, data_id, config.random_flip, config.latents_cache_dir)


def _build_accelerator(config: TrainingConfig) -> Accelerator:
    # Before any work: accelerate would start FSDP or DeepSpeed and fail later (DeepSpeed's gradient norm is no tensor,
    # FSDP's ranks hang on the main process's export of sharded weights).
    for engine, variable in (("FSDP", "ACCELERATE_USE_FSDP"), ("DeepSpeed", "ACCELERATE_USE_DEEPSPEED")):
        if os.environ.get(variable, "false").lower() in ("1", "true", "yes"):
            raise ValueError(
                f"this run was launched with {engine} ({variable} is set: `accelerate launch --use_"
                f"{engine.lower()}` or a config with it), which this training does not support: it trains with DDP, "
                "on one machine or many. Its models (up to a few hundred million parameters) fit one GPU, and its EMA, "
                "checkpoints and export need whole weights on every process. Fix: launch with --multi_gpu (and "
                "--num_machines, --machine_rank, --main_process_ip for several machines)."
            )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    xpu = getattr(torch, "xpu", None)  # Without a GPU, `cpu=True` makes launched processes one gloo group.
    gpu = torch.cuda.is_available() or torch.backends.mps.is_available() or bool(xpu and xpu.is_available())
    cpu = config.cpu or not gpu
    emulated_bf16 = cpu and config.mixed_precision == "bf16" and not cpu_supports_bf16()
    accelerator = Accelerator(
        cpu=cpu,
        mixed_precision="no" if emulated_bf16 else config.mixed_precision,  # emulated bf16 is slower than fp32
        log_with=None if config.report_to == "none" else config.report_to,
        project_config=ProjectConfiguration(config.output_dir, os.path.join(config.output_dir, config.logging_dir)),
        step_scheduler_with_optimizer=False,  # One schedule step per optimizer step, whatever the process count.
        dataloader_config=DataLoaderConfiguration(non_blocking=gpu),  # from pinned memory, not waiting for the copy
        # How long a process waits for the others in a collective before the run fails (NCCL's default is 10 min).
        kwargs_handlers=[
            InitProcessGroupKwargs(timeout=timedelta(seconds=config.ddp_timeout)),
            # The model's only buffer, the fixed sincos positions, is the same on every process: not sent each step.
            DistributedDataParallelKwargs(broadcast_buffers=False),
        ],
    )
    if accelerator.num_processes > 1:
        logger.info(
            "Process group: %d processes, timeout %d s (--ddp_timeout)", accelerator.num_processes, config.ddp_timeout
        )
    if not accelerator.is_local_main_process:
        for name in ("diffusers", "datasets", "transformers"):  # Warnings of other processes still show.
            logging.getLogger(name).setLevel(logging.ERROR)
    if accelerator.device.type == "cuda":  # TF32 matmuls and convolutions, as DiT trains, unless --no_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = not config.no_tf32
        if accelerator.mixed_precision == "no" and torch.cuda.is_bf16_supported():
            logger.info("This GPU computes in bf16: --mixed_precision bf16 trains faster in about half the memory.")
    if accelerator.device.type == "cpu":  # Each process gets its share of the cores (or `--num_cpu_threads`).
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
        torch.set_num_threads(config.num_cpu_threads or cpu_threads_per_process(local_processes))
        if emulated_bf16:
            logger.warning("--mixed_precision bf16: this CPU has no native bf16, training in fp32 (it is faster).")
        logger.info(
            "CPU training: %d thread(s) per process, %d process(es) here, precision %s",
            *(torch.get_num_threads(), local_processes, accelerator.mixed_precision),
            main_process_only=False,
        )
    return accelerator


def dataloader_options(num_workers: int | None, device: torch.device, local_processes: int) -> dict:
    """DataLoader workers and pinned memory: on a GPU a share of the CPUs per process by default (decoding must keep
    up with the GPU) and pinned host memory; on the CPU no workers by default (they would take the cores the training
    computes on). Workers are kept across epochs: every item carries its epoch (`SeededEpochSampler`), so their copies
    of the dataset need no `set_epoch`."""
    if num_workers is None:
        num_workers = max(1, min(8, (os.cpu_count() or 1) // max(1, local_processes))) if device.type == "cuda" else 0
    return {"num_workers": num_workers, "pin_memory": device.type == "cuda", "persistent_workers": num_workers > 0}


def cpu_supports_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the processor computes bf16 natively (`False` where `cpuinfo` cannot be read)."""
    try:
        return bool(NATIVE_BF16_FLAGS & set(Path(cpuinfo).read_text().split()))
    except OSError:
        return False


def cpu_threads_per_process(num_local_processes: int) -> int:
    """The CPUs this process may use (its affinity) shared by `num_local_processes`, at least one (`accelerate launch`
    sets `OMP_NUM_THREADS=1` without a GPU, leaving the other cores idle)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cpus // max(1, num_local_processes))


def build_optimizer(
    model: torch.nn.Module, learning_rate: float, betas=(0.9, 0.999), weight_decay: float = 1e-6, eps: float = 1e-8
) -> torch.optim.AdamW:
    """
    AdamW over `model` with weight decay on weight matrices only: not on biases and norms (under 2 dimensions),
    `nn.Embedding` tables or the parameters named in `NO_DECAY_NAME_SUFFIXES`.

    Args:
        model (`nn.Module`): the model to train.
        learning_rate (`float`): `--learning_rate`.
        betas (`tuple[float, float]`, *optional*, defaults to `(0.9, 0.999)`): `--adam_beta1`, `--adam_beta2`.
        weight_decay (`float`, *optional*, defaults to 1e-6): `--adam_weight_decay`.
        eps (`float`, *optional*, defaults to 1e-8): `--adam_epsilon`.
    """
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    # "decay" marks the group a resumed run may give another --adam_weight_decay (`resume`).
    groups = [
        {"params": [], "weight_decay": weight_decay, "decay": True},
        {"params": [], "weight_decay": 0.0, "decay": False},
    ]
    for name, param in model.named_parameters():
        if param.requires_grad:
            no_decay = param.ndim < 2 or id(param) in embeddings or name.endswith(NO_DECAY_NAME_SUFFIXES)
            groups[no_decay]["params"].append(param)
    groups = [group for group in groups if group["params"]]
    # Fused: one kernel per step, and it can skip a step decided on the device (`found_inf`, see `train`).
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, eps=eps, fused=True)


def build_noise_scheduler(config: TrainingConfig, pretrained: dict | None = None) -> DDPMScheduler:
    """The training `DDPMScheduler` (saved with the pipeline): the diffusion flags, else the pre-trained pipeline's
    settings (`pretrained`), else epsilon, 1000 steps, linear; a `ValueError` for one that cannot train or sample."""
    pretrained = pretrained or {}
    settings = {
        "num_train_timesteps": config.ddpm_num_steps or pretrained.get("num_train_timesteps", 1000),
        "beta_schedule": config.ddpm_beta_schedule or pretrained.get("beta_schedule", "linear"),
        "prediction_type": config.prediction_type or pretrained.get("prediction_type", "epsilon"),
        "beta_start": pretrained.get("beta_start", 0.0001),
        "beta_end": pretrained.get("beta_end", 0.02),
    }
    start, end, steps = settings["beta_start"], settings["beta_end"], settings["num_train_timesteps"]
    # The flags are checked by `validate_args`; a pre-trained pipeline's scheduler_config.json is checked here.
    known = settings["beta_schedule"] in BETA_SCHEDULES and settings["prediction_type"] in PREDICTION_TYPES
    numbers = (
        isinstance(steps, int) and DIFFUSION_STEPS[0](steps) and all(isinstance(b, (int, float)) for b in (start, end))
    )
    if not (known and numbers and 0 < start < end < 1):  # NaN fails every comparison
        raise ValueError(
            f"the scheduler of --pretrained_model_name_or_path set a schedule that cannot train: {settings} (the betas "
            f"must be finite with 0 < beta_start < beta_end < 1, the steps an integer in [1, 100000], the schedule one of "
            f"{BETA_SCHEDULES}, the prediction type one of {PREDICTION_TYPES}). Fix: pass --ddpm_num_steps, "
            "--ddpm_beta_schedule, --prediction_type."
        )
    if config.validation_inference_steps > steps:
        raise ValueError(
            f"--validation_inference_steps={config.validation_inference_steps} is more than the {steps} diffusion "
            "steps (--ddpm_num_steps): a sampler cannot take more steps than the diffusion has. Lower it."
        )
    return DDPMScheduler(**settings)


def build_mask_generator(
    mask_type: str, mask_rate: float, block_size: int | None = None, crop_size: int | None = None, **kwargs
) -> MaskGenerator | None:
    """The `MaskGenerator` of the mask flags, or `None` for `mask_rate == 0` (fine-tuning on full images)."""
    if not mask_rate:
        return None
    return MaskGenerator(mask_type, mask_rate=mask_rate, block_size=block_size or 2, crop_size=crop_size, **kwargs)


def _model_sample_size(config: TrainingConfig, vae: AutoencoderKL | None) -> int:
    """The side of the model's input: `--resolution`, or the latent side the VAE makes of it (the flags checked
    against the VAE)."""
    if vae is None:
        return config.resolution
    if config.num_channels not in (None, vae.config.in_channels):
        raise ValueError(
            f"--num_channels={config.num_channels} but the VAE encodes {vae.config.in_channels}-channel images: drop "
            "--num_channels (the images are converted to what the VAE takes)."
        )
    factor = vae_scale_factor(vae)
    if config.resolution % factor:
        raise ValueError(
            f"--resolution={config.resolution} is not a multiple of the VAE's downsampling factor {factor}: pass "
            f"--resolution {max(factor, config.resolution // factor * factor)}."
        )
    return config.resolution // factor


def _check_model_plan(
    config: TrainingConfig, model_config: dict, device: torch.device, size: int, mixed_precision: str = "no"
) -> tuple:
    """Check the flags against the model config (the model, built on the `meta` device, checks its own) and the
    device's memory, before data or weights are loaded. Returns the mask generator and the bytes of a checkpoint."""
    source = config.pretrained_model_name_or_path
    where = f"--pretrained_model_name_or_path={source!r}" if source else f"--model_config={config.model_config!r}"
    if model_config.get("sample_size") != size:
        factor = config.resolution // size  # the VAE's, or 1
        latent = f" (latents of side {size} with the VAE)" if factor > 1 else ""
        raise ValueError(
            f"--resolution={config.resolution}{latent} but {where} has sample_size={model_config.get('sample_size')}: "
            f"pass --resolution {model_config.get('sample_size') * factor} (or drop sample_size from the --model_config "
            "file)."
        )
    in_channels = config.num_channels or model_config.get("in_channels", 3)
    if size == config.resolution and in_channels not in (1, 3):
        raise ValueError(
            f"{where} takes in_channels={in_channels}: latents, not images. Fix: pass the --vae_name_or_path it was "
            "trained with."
        )
    try:
        with torch.device("meta"):
            model = MaskedDiTModel.from_config({**model_config, "in_channels": in_channels})
    except ValueError as error:
        raise ValueError(f"{where} describes no valid model at --resolution {config.resolution}: {error}") from None
    names = ("mask_type", "mask_rate", "mask_block_size", "mask_crop_size")
    mask_generator = build_mask_generator(*(getattr(config, name) for name in names), rounding=config.mask_rounding)
    try:
        if mask_generator is not None:
            mask_generator.validate(model.grid_size)
    except ValueError as error:
        flags = " ".join(f"--{name} {getattr(config, name)}" for name in names if getattr(config, name) is not None)
        raise ValueError(
            f"the mask flags ({flags}) do not fit --resolution {config.resolution} with patch size "
            f"{model.config.patch_size} ({model.grid_size}x{model.grid_size} patches): {error}"
        ) from None
    masked = mask_generator.num_masked(model.grid_size) if mask_generator is not None else 0

    # The memory of a step, roughly: weights, gradients, AdamW's two moments and the EMA (float32); ~40 values per
    # token, width and block kept for the backward pass (attention, the 4x MLP, norms), in 16 bits under bf16/fp16,
    # and with gradient checkpointing only each block's input plus one block's; five image-sized tensors.
    weights = 4 * sum(p.numel() for p in model.parameters())
    tokens = config.train_batch_size * (model.num_patches - masked) * model.config.hidden_size
    images = 4 * 5 * config.train_batch_size * in_channels * size**2

    def needed(half: bool, checkpointing: bool) -> float:
        per_token = 40 + 2 * model.config.num_layers if checkpointing else 40 * model.config.num_layers
        return weights * (4 + config.use_ema) + (2 if half else 4) * per_token * tokens + images

    available = math.inf  # not estimated on other devices
    if device.type == "cuda":
        available = torch.cuda.get_device_properties(device).total_memory
    elif device.type == "cpu" and hasattr(os, "sysconf"):
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    half, checkpointing = mixed_precision in ("bf16", "fp16"), config.gradient_checkpointing
    gib = f"GiB for a training step, but the {device.type} has {available / 2**30:.3g} GiB"
    if needed(True, True) > available:
        raise ValueError(
            f"--resolution={config.resolution} with --train_batch_size={config.train_batch_size} and this model "
            f"({weights / 4:.3g} parameters) needs about {needed(True, True) / 2**30:.3g} {gib}, even with "
            "--mixed_precision bf16 and --gradient_checkpointing. Fix: lower --resolution or --train_batch_size, or "
            "choose a smaller model."
        )
    if needed(half, checkpointing) > available:
        fits = next(f for f in [(True, checkpointing), (half, True), (True, True)] if needed(*f) <= available)
        flags = ["--mixed_precision bf16"] * (fits[0] and not half)
        flags += ["--gradient_checkpointing"] * (fits[1] and not checkpointing)
        logger.warning(
            "This run needs about %.3g %s: it will likely run out of memory. %s would make it fit (about %.3g GiB).",
            *(needed(half, checkpointing) / 2**30, gib, " and ".join(flags), needed(*fits) / 2**30),
        )
    return mask_generator, weights * (3 + config.use_ema)  # weights, AdamW's two moments, EMA


def _check_model_fits_data(
    config: TrainingConfig, model_config: dict, channels: int, classes: int | None, latent: bool = False
) -> None:
    """Raise a `ValueError` naming the flag when the (pre-trained) transformer cannot be trained on this data."""
    source = f"the transformer of --pretrained_model_name_or_path={config.pretrained_model_name_or_path!r}"
    in_channels, model_classes = model_config["in_channels"], model_config.get("num_class_embeds")
    if in_channels != channels:
        fix = f"pass --num_channels {in_channels}"
        if latent:  # the data are the VAE's latents
            fix = "pass the --vae_name_or_path it was trained with, or none for a pixel-space model"
        raise ValueError(f"{source} takes in_channels={in_channels} but the data has {channels} channel(s): {fix}.")
    if (model_config.get("out_channels") or in_channels) != in_channels:
        raise ValueError(
            f"{source} predicts out_channels={model_config['out_channels']} for {in_channels} input channels (learned "
            "variance), which this script does not train: use out_channels = in_channels."
        )
    if model_classes != classes:
        if model_classes is None:
            fix = "pass --ignore_labels to train it unconditionally"
        elif classes is None:
            fix = "train on data with the same classes (--label_column, or class sub-folders in --train_data_dir)"
        else:
            fix = "train on data with the same number of classes, or pass --ignore_labels with an unconditional model"
        data = "no class labels" if classes is None else f"{classes} classes (labels up to {classes - 1})"
        raise ValueError(f"{source} has num_class_embeds={model_classes} but the data has {data}: {fix}.")


def _on_main(accelerator: Accelerator, function, *args, share: bool = False):
    """Run `function` on the main process; a `ValueError` it raises is raised on every process, so none waits."""
    result = message = None
    if accelerator.is_main_process:
        try:
            result = function(*args)
        except ValueError as error:
            message = str(error)
    if accelerator.num_processes > 1:
        box = [message, result if share else None]
        broadcast_object_list(box)
        message, result = box[0], box[1] if share else result
    if message is not None:
        raise ValueError(message)
    return result


def _create_hub_repo(config: TrainingConfig) -> str:
    """Create (or find) the Hub repo of `--push_to_hub` before training, as diffusers' scripts do; return its id."""
    repo_id = config.hub_model_id or Path(config.output_dir).resolve().name
    try:
        return create_repo(repo_id, exist_ok=True, private=config.hub_private_repo, token=config.hub_token).repo_id
    except Exception as error:  # Offline, unauthorised, a bad id: all mean no push, so no training.
        reason = (str(error).strip().splitlines() or [""])[0]
        raise ValueError(
            f"--push_to_hub: the Hub repo {repo_id!r} could not be created ({type(error).__name__}: {reason}). Fix: "
            "log in (`hf auth login`) or pass --hub_token, check the connection and --hub_model_id, or drop "
            "--push_to_hub. Nothing was trained."
        ) from None


def claim_output_dir(config: TrainingConfig, required_bytes: int = 0) -> IO | None:
    """Make `--output_dir` this run's: room for a checkpoint and the pipeline, a lock (the OS drops it when the
    process ends, however), no other run's checkpoints (unless resumed or deleted). Returns the lock to hold."""
    output_dir = existing = Path(config.output_dir)
    while not existing.exists():  # `validate_args` made sure it is a writable folder, or can be created in one.
        existing = existing.parent
    name = f"--output_dir={config.output_dir!r}"
    free, checkpoints = shutil.disk_usage(existing).free, list_checkpoints(output_dir)
    if config.overwrite_output_dir:  # the checkpoints it deletes below make room
        free += sum(file.stat().st_size for path in checkpoints for file in path.rglob("*") if file.is_file())
    last_step = int(checkpoints[-1].name.split("-")[1]) if checkpoints else -1
    if config.resume_from_checkpoint == "latest" and last_step >= (config.max_train_steps or math.inf):
        required_bytes //= 2  # a retry of an export (the disk was full) writes the pipeline, not a checkpoint
    if free < required_bytes:
        raise ValueError(
            f"{name} has {free / 2**20:.0f} MiB free, but a checkpoint and the final pipeline need about "
            f"{required_bytes / 2**20:.0f} MiB. Fix: free space or choose another folder."
        )
    if config.resume_from_checkpoint not in (None, "latest"):
        named_checkpoint(output_dir, config.resume_from_checkpoint)  # nothing to resume: refused before any write
    output_dir.mkdir(parents=True, exist_ok=True)
    lock = open(output_dir / LOCK_FILENAME, "a")
    try:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # DataLoader workers are forked: one that outlives a killed run must not keep its folder locked.
            os.register_at_fork(after_in_child=lock.close)
    except OSError as error:
        lock.close()
        if error.errno in (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP):  # Lustre and some NFS mounts
            raise ValueError(
                f"{name} is on a file system without file locks ({os.strerror(error.errno)}), so one run per folder "
                "cannot be made sure of. Fix: choose an --output_dir on a file system with locks (a local disk, or "
                "NFS with its lock service), and copy the result where it should live afterwards."
            ) from None
        raise ValueError(
            f"{name} is in use by another training run (it holds {output_dir / LOCK_FILENAME}). Fix: wait for that "
            "run to end, or choose another folder."
        ) from None
    checkpoints = list_checkpoints(output_dir)
    # A finished run whose checkpoints were deleted still holds its model: a fresh run would overwrite it.
    models = [p.name for p in (output_dir / "model_index.json", output_dir / "config.json") if p.exists()]
    if (checkpoints or models) and config.resume_from_checkpoint is None:
        if not config.overwrite_output_dir:
            lock.close()
            held = ", ".join([*(p.name for p in checkpoints[-3:]), *models])
            raise ValueError(
                f"{name} holds another run's checkpoints or model ({held}). Fix: pass --resume_from_checkpoint latest "
                "to continue it, --overwrite_output_dir to start afresh (its checkpoints are deleted and its model "
                "replaced at the end), or choose another folder."
            )
        for path in checkpoints:
            logger.warning("--overwrite_output_dir: deleting %s", path)
            shutil.rmtree(path)
    return lock
