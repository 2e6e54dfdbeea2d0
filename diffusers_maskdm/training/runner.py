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
"""`run_training`: masked pre-training or fine-tuning of a `MaskedDiTModel` with accelerate, from parsed arguments.

The steps, in order: accelerator; data; model (new, or from a pre-trained MaskDM folder); checks that need both;
optimizer, LR schedule, EMA; resume; the loop (seeded step randomness, loss guard, logs, checkpoints, sample grids,
FID); the final pipeline and model card; the Hub push. See `docs/training.md`.
"""

import argparse
import contextlib
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from ..models import MaskedDiTModel
from .args import build_noise_scheduler
from .checkpointing import (
    check_output_dir,
    estimate_checkpoint_bytes,
    interrupted_writes,
    load_checkpoint,
    register_checkpoint_hooks,
    resolve_resume_checkpoint,
    save_checkpoint,
)
from .data import build_train_dataloader, build_train_dataset
from .export import push_pipeline, sample_grid, save_pipeline
from .hardware import cpu_supports_bf16, cpu_threads_per_process
from .loop import (
    NonFiniteLossGuard,
    Throughput,
    build_mask_generator,
    diffusion_loss,
    injected_nonfinite,
    make_diffusion_inputs,
    maybe_pause_for_tests,
    num_visible_tokens,
    step_generator,
)
from .model_source import new_model_config
from .optim import build_optimizer


logger = get_logger(__name__)


def _use_cpu(args: argparse.Namespace) -> bool:
    """CPU when asked, or when there is no GPU: `accelerate launch --multi_gpu` then runs one CPU process per rank."""
    if args.cpu:
        return True
    has_xpu = hasattr(torch, "xpu") and torch.xpu.is_available()
    has_mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    return not (torch.cuda.is_available() or has_xpu or has_mps)


def build_accelerator(args: argparse.Namespace) -> Accelerator:
    """The run's `Accelerator`: logging under `--output_dir/--logging_dir`, one LR-scheduler step per optimizer step."""
    project_config = ProjectConfiguration(
        project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, args.logging_dir)
    )
    cpu = _use_cpu(args)
    mixed_precision = args.mixed_precision
    if cpu and mixed_precision == "bf16" and not cpu_supports_bf16():
        mixed_precision = "no"  # emulated bf16 is slower than fp32; said in the log by `_use_cpu_cores`
    return Accelerator(
        cpu=cpu,
        mixed_precision=mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=project_config,
        # The schedule is stepped once per optimizer step on every process, whatever the number of processes.
        step_scheduler_with_optimizer=False,
    )


def _setup_logging(accelerator: Accelerator) -> None:
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S", level=logging.INFO
    )
    if not accelerator.is_local_main_process:
        # Warnings of other processes (skipped images, non-finite losses) still show; chatter does not.
        for name in ("diffusers", "datasets", "transformers"):
            logging.getLogger(name).setLevel(logging.ERROR)


def _check_model_fits_data(model_config: dict, dataset, num_classes: int | None, args: argparse.Namespace) -> None:
    """Raise a `ValueError` naming the flag when the (pre-trained) transformer cannot be trained on this data."""
    source = f"the transformer of --pretrained_model_name_or_path={args.pretrained_model_name_or_path!r}"
    if model_config["in_channels"] != dataset.num_channels:
        raise ValueError(
            f"{source} takes in_channels={model_config['in_channels']} but the data has {dataset.num_channels} "
            f"channel(s): pass --num_channels {model_config['in_channels']}."
        )
    out_channels = model_config.get("out_channels") or model_config["in_channels"]
    if out_channels != model_config["in_channels"]:
        raise ValueError(
            f"the transformer predicts {out_channels} channels for {model_config['in_channels']} input channels "
            "(learned variance), which this script does not train: use out_channels = in_channels."
        )
    model_classes = model_config.get("num_class_embeds")
    if model_classes != num_classes:
        if model_classes is None:
            fix = "pass --ignore_labels to train it unconditionally"
        elif num_classes is None:
            fix = "train on data with the same classes (--label_column, or class sub-folders in --train_data_dir)"
        else:
            fix = "train on data with the same number of classes, or pass --ignore_labels with an unconditional model"
        raise ValueError(
            f"{source} has num_class_embeds={model_classes} but the data has "
            f"{'no class labels' if num_classes is None else f'{num_classes} classes'}: {fix}."
        )


def _use_cpu_cores(accelerator: Accelerator, args: argparse.Namespace) -> None:
    """On the CPU, give each process its share of the cores (or `--num_cpu_threads`) and say the precision."""
    if accelerator.device.type != "cpu":
        return
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
    torch.set_num_threads(args.num_cpu_threads or cpu_threads_per_process(local_processes))
    if args.mixed_precision == "bf16" and accelerator.mixed_precision == "no":
        logger.warning(
            "--mixed_precision bf16: this CPU has no native bf16 (AVX512-BF16, AMX or Arm BF16), where emulated bf16 "
            "is slower than fp32: training in fp32."
        )
    logger.info(
        "CPU training: %d thread(s) per process, %d process(es) here, precision %s",
        torch.get_num_threads(),
        local_processes,
        accelerator.mixed_precision,
        main_process_only=False,
    )


def _all_finite(accelerator: Accelerator, value: torch.Tensor) -> bool:
    """Whether `value` is finite on every process: all processes must agree to skip a step together."""
    flag = torch.isfinite(value.detach().float()).all().float().reshape(1)
    if accelerator.num_processes > 1:
        flag = accelerator.gather(flag)
    return bool(flag.min().item() == 1.0)


def _weights_fingerprint(model: torch.nn.Module) -> torch.Tensor:
    params = [p.detach().double() for p in model.parameters()]
    return torch.stack([sum(p.sum() for p in params), sum((p * p).sum() for p in params)]).reshape(1, 2)


def resumable_batches(
    dataloader, accelerator: Accelerator, epoch: int, position: int
) -> Iterator[tuple[int, int, Any]]:
    """
    Endless batches from `(epoch, position)`: yields `(epoch, position after this batch, batch)`.

    The data order of an epoch is a function of the seed and the epoch (`SeededEpochSampler`), so skipping the
    first `position` batches of `epoch` resumes exactly where a checkpoint was taken.
    """
    while True:
        dataloader.set_epoch(epoch)
        loader = accelerator.skip_first_batches(dataloader, position) if position else dataloader
        for index, batch in enumerate(loader, start=position + 1):
            yield epoch, index, batch
        epoch, position = epoch + 1, 0


def run_training(args: argparse.Namespace) -> Path:
    """
    Train as the parsed `args` say (see `diffusers_maskdm.training.args`) and return the output folder.

    Raises:
        `ValueError`: for a bad combination of flags and data, before the first step.
        `NonFiniteLossError`: when too many steps in a row had a non-finite loss (after saving a checkpoint).
        `CheckpointWriteError`: when a checkpoint cannot be written (earlier ones are untouched).
    """
    accelerator = build_accelerator(args)
    _setup_logging(accelerator)
    _use_cpu_cores(accelerator, args)
    logger.info(accelerator.state, main_process_only=False)
    output_dir = Path(args.output_dir)
    set_seed(args.seed)

    # 1. Data
    with accelerator.main_process_first():
        dataset = build_train_dataset(
            dataset_name=args.dataset_name,
            dataset_config_name=args.dataset_config_name,
            train_data_dir=args.train_data_dir,
            image_column=args.image_column,
            label_column=args.label_column,
            cache_dir=args.cache_dir,
            resolution=args.resolution,
            center_crop=args.center_crop,
            random_flip=args.random_flip,
            num_channels=args.num_channels,
            max_train_samples=args.max_train_samples,
            seed=args.seed,
        )
    num_classes = None if args.ignore_labels else dataset.num_classes

    # 2. Model
    if args.pretrained_source is not None:
        _check_model_fits_data(args.pretrained_source.read_config(), dataset, num_classes, args)
        model = args.pretrained_source.load()
        logger.info(
            "Starting from the %s weights of %s",
            "EMA" if args.pretrained_source.is_ema else "raw",
            args.pretrained_model_name_or_path,
        )
    else:
        config = new_model_config(
            args.resolution, dataset.num_channels, num_classes, args.model_config, args.model_preset
        )
        model = MaskedDiTModel.from_config(config)
        _check_model_fits_data(dict(model.config), dataset, num_classes, args)
    if args.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    patch_size, grid_size = model.config.patch_size, model.grid_size
    mask_generator = build_mask_generator(args.mask_type, args.mask_rate, args.mask_block_size, args.mask_crop_size)
    noise_scheduler = build_noise_scheduler(args)

    ema_model = None
    if args.use_ema:
        ema_model = EMAModel(
            model.parameters(),
            decay=args.ema_decay,
            use_ema_warmup=True,
            inv_gamma=args.ema_inv_gamma,
            power=args.ema_power,
            model_cls=MaskedDiTModel,
            model_config=model.config,
        )
        ema_model.to(accelerator.device)

    # 3. A place to write, before any step is taken
    if accelerator.is_main_process:
        check_output_dir(output_dir, 2 * estimate_checkpoint_bytes(model, args.use_ema))
    accelerator.wait_for_everyone()

    # 4. Optimizer, data loader, schedule
    optimizer = build_optimizer(
        model,
        args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )
    train_dataloader = build_train_dataloader(
        dataset, args.train_batch_size, seed=args.seed, num_workers=args.dataloader_num_workers
    )
    model, optimizer, train_dataloader = accelerator.prepare(model, optimizer, train_dataloader)
    batches_per_epoch = len(train_dataloader)
    max_train_steps = args.max_train_steps or math.ceil(
        args.num_epochs * batches_per_epoch / args.gradient_accumulation_steps
    )
    lr_scheduler = get_scheduler(
        args.lr_scheduler, optimizer, num_warmup_steps=args.lr_warmup_steps, num_training_steps=max_train_steps
    )
    lr_scheduler = accelerator.prepare(lr_scheduler)
    register_checkpoint_hooks(accelerator, ema_model)
    unwrapped = accelerator.unwrap_model(model)

    if accelerator.is_main_process and args.report_to != "none":
        tracked = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool)) and v is not None}
        accelerator.init_trackers("train_masked_pretrain", config=tracked)

    # 5. Resume
    global_step, epoch, position = 0, 0, 0
    # Wall-clock seconds spent in training steps (not in checkpoints, grids or FID), summed over resumes.
    train_seconds = 0.0
    guard = NonFiniteLossGuard(args.max_consecutive_nonfinite_steps, args.learning_rate, accelerator.mixed_precision)
    resume_path = resolve_resume_checkpoint(output_dir, args.resume_from_checkpoint)
    if accelerator.is_main_process and args.resume_from_checkpoint == "latest":
        for temp in interrupted_writes(output_dir):
            shutil.rmtree(temp, ignore_errors=True)
    accelerator.wait_for_everyone()
    if resume_path is not None:
        state = load_checkpoint(accelerator, resume_path)
        global_step, epoch, position = state["global_step"], state["epoch"], state["position"]
        train_seconds = float(state.get("train_seconds", 0.0))
        guard.load_state_dict(state)
        for key, now in (
            ("num_processes", accelerator.num_processes),
            ("train_batch_size", args.train_batch_size),
            ("gradient_accumulation_steps", args.gradient_accumulation_steps),
            ("seed", args.seed),
        ):
            if state.get(key) != now:
                logger.warning(
                    "Resuming with %s=%s but %s was saved with %s: training continues, but not exactly as the "
                    "original run would have.",
                    key,
                    now,
                    resume_path,
                    state.get(key),
                )
        logger.info("Resumed from %s at step %d (epoch %d, batch %d)", resume_path, global_step, epoch, position)

    def training_state() -> dict[str, Any]:
        return {
            "global_step": global_step,
            "epoch": epoch,
            "position": position,
            "num_processes": accelerator.num_processes,
            "train_batch_size": args.train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "seed": args.seed,
            "train_seconds": train_seconds,
            **guard.state_dict(),
        }

    def checkpoint() -> Path:
        return save_checkpoint(accelerator, output_dir, global_step, training_state(), args.checkpoints_total_limit)

    total_batch_size = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info("***** Running training (%s) *****", "masked pre-training" if mask_generator else "fine-tuning")
    logger.info(
        "  Images = %d (unreadable files skipped: %d), batches per epoch per process = %d",
        len(dataset),
        dataset.num_skipped,
        batches_per_epoch,
    )
    logger.info("  Total batch size = %d, optimization steps = %d", total_batch_size, max_train_steps)
    if mask_generator is not None:
        logger.info(
            "  Masks: %r, achieved mask rate %.3f", mask_generator, mask_generator.achieved_mask_rate(grid_size)
        )

    # 6. The loop
    stream = resumable_batches(train_dataloader, accelerator, epoch, position)
    progress_bar = tqdm(
        total=max_train_steps, initial=global_step, desc="Steps", disable=not accelerator.is_local_main_process
    )
    throughput = Throughput()
    null_class = unwrapped.null_class_label
    mask_rate = mask_generator.achieved_mask_rate(grid_size) if mask_generator is not None else 0.0
    model.train()
    while global_step < max_train_steps:
        step = global_step + 1  # 1-based, as shown to users
        step_start = time.perf_counter()
        finite, what, step_loss = True, "loss", 0.0
        for micro_step in range(args.gradient_accumulation_steps):
            epoch, position, batch = next(stream)
            if position == batches_per_epoch:
                epoch, position = epoch + 1, 0
            if not finite:
                continue  # The rest of a skipped step's data is consumed, so the data position stays exact.
            clean = batch["pixel_values"]
            labels = batch.get("class_labels") if num_classes else None
            generator = step_generator(args.seed, accelerator.process_index, global_step, micro_step, clean.device)
            inputs = make_diffusion_inputs(
                clean,
                noise_scheduler,
                generator,
                mask_generator,
                grid_size,
                labels,
                args.class_dropout_prob,
                null_class,
            )
            last_micro_step = micro_step == args.gradient_accumulation_steps - 1
            with contextlib.nullcontext() if last_micro_step else accelerator.no_sync(model):
                loss = diffusion_loss(model, inputs, patch_size)
                if injected_nonfinite(step):
                    loss = loss * float("nan")
                finite = _all_finite(accelerator, loss)
                if finite:
                    accelerator.backward(loss / args.gradient_accumulation_steps)
                    step_loss += loss.item() / args.gradient_accumulation_steps
            throughput.update(
                clean.shape[0], num_visible_tokens(clean.shape[0], unwrapped.num_patches, mask_generator, grid_size)
            )
        if accelerator.is_main_process:
            maybe_pause_for_tests(output_dir, step)

        grad_norm = None
        if finite:
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            # With fp16 the gradient scaler skips overflowing steps itself (and lowers its scale): that is normal.
            if accelerator.scaler is None and not bool(torch.isfinite(grad_norm)):
                finite, what = False, "gradient norm"
        if finite:
            optimizer.step()
            if ema_model is not None and not accelerator.optimizer_step_was_skipped:
                ema_model.step(model.parameters())
        optimizer.zero_grad(set_to_none=True)
        lr_scheduler.step()
        global_step = step
        train_seconds += time.perf_counter() - step_start
        progress_bar.update(1)
        stop = guard.record(global_step, finite, what)

        logs = {
            "train/lr": lr_scheduler.get_last_lr()[0],
            "train/mask_rate": mask_rate,
            "train/nonfinite_skipped_total": guard.total_skipped,
            "train/seconds": train_seconds,
        }
        if finite:
            logs["train/loss"] = step_loss
            if grad_norm is not None:
                logs["train/grad_norm"] = float(grad_norm)
        rates = throughput.rates()
        logs.update({name: value * accelerator.num_processes for name, value in rates.items()})
        if ema_model is not None and ema_model.cur_decay_value is not None:
            logs["train/ema_decay"] = ema_model.cur_decay_value
        progress_bar.set_postfix(loss=logs.get("train/loss", float("nan")), lr=logs["train/lr"])
        accelerator.log(logs, step=global_step)

        if stop:
            path = checkpoint()
            progress_bar.close()
            raise guard.stop_error(global_step, path)
        # The last step is always saved: a kill while the pipeline is written loses nothing, and a run can be
        # extended later with a larger --max_train_steps.
        if global_step % args.checkpointing_steps == 0 or global_step == max_train_steps:
            checkpoint()
        if args.validation_steps and global_step % args.validation_steps == 0 and global_step < max_train_steps:
            if accelerator.is_main_process:
                _validation_grid(accelerator, unwrapped, noise_scheduler, ema_model, args, output_dir, global_step)
            accelerator.wait_for_everyone()
        if args.eval_fid_steps and global_step % args.eval_fid_steps == 0:
            if accelerator.is_main_process:
                _evaluate_fid(accelerator, unwrapped, noise_scheduler, ema_model, args, global_step)
            accelerator.wait_for_everyone()
    progress_bar.close()

    # 7. Consistency of the processes, then the final pipeline
    fingerprints = accelerator.gather(_weights_fingerprint(unwrapped).to(accelerator.device))
    if not bool((fingerprints == fingerprints[0]).all()):
        raise RuntimeError(f"The {accelerator.num_processes} processes ended with different weights: {fingerprints}")
    if accelerator.num_processes > 1:
        logger.info("The weights are identical on all %d processes.", accelerator.num_processes)
    if accelerator.is_main_process:
        grid = save_pipeline(
            output_dir,
            unwrapped,
            noise_scheduler,
            ema_model,
            repo_id=args.hub_model_id,
            training=_card_training_info(args, accelerator, dataset, total_batch_size, max_train_steps, mask_rate),
            base_model=_hub_base_model(args),
            num_grid_images=args.num_validation_images,
            grid_inference_steps=args.validation_inference_steps,
            seed=args.seed,
        )
        _log_grid(accelerator, grid, global_step)
        logger.info("Saved the MaskedDDPMPipeline, its model card and samples.png in %s", output_dir)
        if args.push_to_hub:
            repo_id = args.hub_model_id or output_dir.resolve().name
            info = push_pipeline(output_dir, repo_id, private=args.hub_private_repo)
            logger.info("Pushed to %s", getattr(info, "commit_url", repo_id))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return output_dir


def _card_training_info(
    args, accelerator: Accelerator, dataset, total_batch_size: int, max_train_steps: int, mask_rate: float
) -> dict:
    info = {
        "stage": args.stage,
        "mask_kind": args.mask_type if args.mask_rate > 0 else None,
        "mask_rate": mask_rate if args.mask_rate > 0 else None,
        "max_train_steps": max_train_steps,
        "train_batch_size": total_batch_size,
        "resolution": args.resolution,
        "data": dataset.description,
        "max_train_samples": args.max_train_samples,
        "learning_rate": args.learning_rate,
        "use_ema": args.use_ema,
        "mixed_precision": accelerator.mixed_precision,
        "prediction_type": args.prediction_type,
        "fine-tuned from": args.pretrained_model_name_or_path,
    }
    return {key: value for key, value in info.items() if value is not None}


def _hub_base_model(args) -> str | None:
    """The `base_model` of the card: the pre-trained model when it is a Hub repo id (not a local folder)."""
    name = args.pretrained_model_name_or_path
    return name if name and not os.path.isdir(name) else None


def _with_ema_weights(model, ema_model):
    """Context: `model` holds the EMA weights inside, its own weights again after."""

    @contextlib.contextmanager
    def swap():
        if ema_model is None:
            yield
            return
        ema_model.store(model.parameters())
        ema_model.copy_to(model.parameters())
        try:
            yield
        finally:
            ema_model.restore(model.parameters())

    return swap()


def _sampling_pipeline(model, noise_scheduler):
    from ..pipelines import MaskedDDPMPipeline

    pipeline = MaskedDDPMPipeline(transformer=model, scheduler=noise_scheduler)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _log_grid(accelerator: Accelerator, grid, step: int) -> None:
    import numpy as np

    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_image("samples", np.asarray(grid.convert("RGB")), step, dataformats="HWC")


def _validation_grid(accelerator, model, noise_scheduler, ema_model, args, output_dir: Path, step: int) -> None:
    model.eval()
    with _with_ema_weights(model, ema_model):
        grid = sample_grid(
            _sampling_pipeline(model, noise_scheduler),
            args.num_validation_images,
            args.validation_inference_steps,
            args.seed,
        )
    model.train()
    (output_dir / "samples").mkdir(exist_ok=True)
    grid.save(output_dir / "samples" / f"step-{step:06d}.png")
    _log_grid(accelerator, grid, step)


_FID_STATE: dict[str, Any] = {}


def _evaluate_fid(accelerator, model, noise_scheduler, ema_model, args, step: int) -> None:
    """FID-N against the training data (reference statistics cached by `diffusers_maskdm.evaluation`)."""
    from diffusers import DDIMScheduler

    from ..evaluation import compute_fid_for_pipeline, load_feature_extractor
    from ..evaluation.reference_stats import reference_statistics_for_training_data

    if "extractor" not in _FID_STATE:
        extractor = load_feature_extractor("fid-helper", device=accelerator.device)
        _FID_STATE["extractor"] = extractor
        _FID_STATE["reference"] = reference_statistics_for_training_data(
            extractor,
            resolution=args.resolution,
            dataset_name=args.dataset_name,
            dataset_config_name=args.dataset_config_name,
            train_data_dir=args.train_data_dir,
            image_column=args.image_column,
            num_channels=args.num_channels,
            data_cache_dir=args.cache_dir,
            progress=False,
        )
    model.eval()
    with _with_ema_weights(model, ema_model):
        pipeline = _sampling_pipeline(model, DDIMScheduler.from_config(noise_scheduler.config))
        fid = compute_fid_for_pipeline(
            pipeline,
            _FID_STATE["reference"],
            _FID_STATE["extractor"],
            num_samples=args.eval_fid_num_images,
            num_inference_steps=args.validation_inference_steps,
            seed=args.seed,
        )
    model.train()
    logger.info("Step %d: FID-%d = %.3f", step, args.eval_fid_num_images, fid)
    accelerator.log({f"eval/fid_{args.eval_fid_num_images}": fid}, step=step)
