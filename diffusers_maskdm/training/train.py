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
"""The third phase of a run, `train`: the loop, with checkpoints, sample grids, FID and the loss guard.

One optimizer step: `--gradient_accumulation_steps` micro-batches, each with its own seeded generator
(`loop.step_generator`) for noise, timesteps, masks and label dropout; the masked loss; a step whose loss or gradient
norm is not finite on any process is skipped on all of them (`loop.NonFiniteLossGuard`).
"""

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from tqdm.auto import tqdm

from .export import ema_weights, grid_sampler, log_grid, sample_grid
from .loop import diffusion_loss, make_diffusion_inputs, step_generator
from .resume import TrainingState, save_training_checkpoint
from .setup import Run


logger = get_logger(__name__)


def train(run: Run, state: TrainingState) -> None:
    """
    Train from `state` to `run.max_train_steps`, checkpointing every `--checkpointing_steps` and at the last step.

    Raises:
        `NonFiniteLossError`: after `--max_consecutive_nonfinite_steps` skipped steps in a row (checkpointed first).
        `CheckpointWriteError`: when a checkpoint cannot be written (earlier ones are untouched).
    """
    config, accelerator, model, transformer = run.config, run.accelerator, run.model, run.transformer
    accumulation, grid_size = config.gradient_accumulation_steps, transformer.grid_size
    masked = run.mask_generator.num_masked(grid_size) if run.mask_generator is not None else 0
    logger.info("***** Running training (%s) *****", "masked pre-training" if masked else "fine-tuning")
    logger.info(
        "  Images = %d (unreadable files skipped: %d), batches per epoch per process = %d, optimization steps = %d",
        len(run.dataset),
        run.dataset.num_skipped,
        len(run.dataloader),
        run.max_train_steps,
    )
    if run.mask_generator is not None:
        logger.info("  Masks: %r, achieved mask rate %.3f", run.mask_generator, masked / transformer.num_patches)
    batches = _resumable_batches(run.dataloader, accelerator, state.epoch, state.position)
    progress_bar = tqdm(
        total=run.max_train_steps,
        initial=state.global_step,
        desc="Steps",
        disable=not accelerator.is_local_main_process,
    )
    fid_cache: dict[str, Any] = {}
    model.train()
    while state.global_step < run.max_train_steps:
        start = time.perf_counter()
        finite, what, step_loss, images = True, "loss", 0.0, 0
        for micro_step in range(accumulation):
            state.epoch, state.position, batch = next(batches)
            if state.position == len(run.dataloader):
                state.epoch, state.position = state.epoch + 1, 0
            if not finite:
                continue  # The rest of a skipped step's data is consumed, so the data position stays exact.
            clean = batch["pixel_values"]
            generator = step_generator(
                config.seed, accelerator.process_index, state.global_step, micro_step, clean.device
            )
            inputs = make_diffusion_inputs(
                clean,
                run.noise_scheduler,
                generator,
                run.mask_generator,
                grid_size,
                batch.get("class_labels") if run.num_classes else None,
                config.class_dropout_prob,
                transformer.null_class_label,
            )
            with contextlib.nullcontext() if micro_step == accumulation - 1 else accelerator.no_sync(model):
                loss = diffusion_loss(model, inputs)  # the loss reads the patch size from the model
                finite = _all_finite(accelerator, loss)
                if finite:
                    accelerator.backward(loss / accumulation)
                    step_loss += loss.item() / accumulation
            images += clean.shape[0]

        grad_norm = None
        if finite:
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            # With fp16 the gradient scaler skips overflowing steps itself (and lowers its scale): that is normal.
            if accelerator.scaler is None and not bool(torch.isfinite(grad_norm)):
                finite, what = False, "gradient norm"
        if finite:
            run.optimizer.step()
            if run.ema_model is not None and not accelerator.optimizer_step_was_skipped:
                run.ema_model.step(model.parameters())
        run.optimizer.zero_grad(set_to_none=True)
        run.lr_scheduler.step()
        state.global_step += 1
        seconds = time.perf_counter() - start
        state.train_seconds += seconds
        progress_bar.update(1)
        stop = run.guard.record(state.global_step, finite, what)

        images_per_s = images * accelerator.num_processes / max(seconds, 1e-9)
        logs = {
            "train/lr": run.lr_scheduler.get_last_lr()[0],
            "train/mask_rate": masked / transformer.num_patches,
            "train/nonfinite_skipped_total": run.guard.total_skipped,
            "train/seconds": state.train_seconds,
            "perf/images_per_s": images_per_s,
            "perf/tokens_per_s": images_per_s * (transformer.num_patches - masked),
        }
        if finite:
            logs["train/loss"] = step_loss
            if grad_norm is not None:
                logs["train/grad_norm"] = float(grad_norm)
        if run.ema_model is not None and run.ema_model.cur_decay_value is not None:
            logs["train/ema_decay"] = run.ema_model.cur_decay_value
        progress_bar.set_postfix(loss=logs.get("train/loss", float("nan")), lr=logs["train/lr"])
        accelerator.log(logs, step=state.global_step)

        step = state.global_step
        if stop:
            path = save_training_checkpoint(run, state)
            progress_bar.close()
            raise run.guard.stop_error(step, path)
        # The last step is always saved: a kill while the pipeline is written loses nothing, and a run can be
        # extended later with a larger --max_train_steps.
        if step % config.checkpointing_steps == 0 or step == run.max_train_steps:
            save_training_checkpoint(run, state)
        if config.validation_steps and step % config.validation_steps == 0 and step < run.max_train_steps:
            if accelerator.is_main_process:
                _validation_grid(run, step)
            accelerator.wait_for_everyone()
        if config.eval_fid_steps and step % config.eval_fid_steps == 0:
            if accelerator.is_main_process:
                _evaluate_fid(run, step, fid_cache)
            accelerator.wait_for_everyone()
    progress_bar.close()


def _resumable_batches(dataloader, accelerator: Accelerator, epoch: int, position: int) -> Iterator[tuple]:
    """
    Endless `(epoch, position after this batch, batch)` from `(epoch, position)`. The data order of an epoch is a
    function of the seed and the epoch, so skipping the first `position` batches resumes exactly.
    """
    while True:
        dataloader.set_epoch(epoch)
        loader = accelerator.skip_first_batches(dataloader, position) if position else dataloader
        for index, batch in enumerate(loader, start=position + 1):
            yield epoch, index, batch
        epoch, position = epoch + 1, 0


def _all_finite(accelerator: Accelerator, value: torch.Tensor) -> bool:
    """Whether `value` is finite on every process: all processes must agree to skip a step together."""
    flag = torch.isfinite(value.detach().float()).all().float().reshape(1)
    if accelerator.num_processes > 1:
        flag = accelerator.gather(flag)
    return bool(flag.min().item() == 1.0)


def _sampling_pipeline(run: Run, scheduler=None):
    from ..pipelines import MaskedDDPMPipeline

    return MaskedDDPMPipeline(transformer=run.transformer, scheduler=scheduler or run.noise_scheduler)


def _validation_grid(run: Run, step: int) -> None:
    with ema_weights(run.transformer, run.ema_model):
        grid = sample_grid(
            _sampling_pipeline(run),
            run.config.num_validation_images,
            run.config.validation_inference_steps,
            run.config.seed,
            run.config.validation_scheduler,
        )
    (run.output_dir / "samples").mkdir(exist_ok=True)
    grid.save(run.output_dir / "samples" / f"step-{step:06d}.png")
    log_grid(run.accelerator, grid, step)


def _evaluate_fid(run: Run, step: int, cache: dict) -> None:
    """FID-N against the training data (reference statistics cached by `diffusers_maskdm.evaluation`), sampled as the
    grids are (`--validation_scheduler`), so that FID scores what the grids show."""
    from ..evaluation import compute_fid_for_pipeline, load_feature_extractor
    from ..evaluation.reference_stats import reference_statistics_for_training_data

    config = run.config
    if not cache:
        cache["extractor"] = load_feature_extractor("fid-helper", device=run.accelerator.device)
        cache["reference"] = reference_statistics_for_training_data(
            cache["extractor"],
            resolution=config.resolution,
            dataset_name=config.dataset_name,
            dataset_config_name=config.dataset_config_name,
            train_data_dir=config.train_data_dir,
            image_column=config.image_column,
            num_channels=config.num_channels,
            data_cache_dir=config.cache_dir,
            progress=True,
        )
    with ema_weights(run.transformer, run.ema_model):
        fid = compute_fid_for_pipeline(
            _sampling_pipeline(run, grid_sampler(run.noise_scheduler.config, config.validation_scheduler)),
            cache["reference"],
            cache["extractor"],
            num_samples=config.eval_fid_num_images,
            num_inference_steps=config.validation_inference_steps,
            seed=config.seed,
        )
    logger.info("Step %d: FID-%d = %.3f", step, config.eval_fid_num_images, fid)
    run.accelerator.log({f"eval/fid_{config.eval_fid_num_images}": fid}, step=step)
