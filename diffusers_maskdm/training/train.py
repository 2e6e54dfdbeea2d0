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
"""The third phase of a run, `train`: the loop and the pieces of one step, with checkpoints, sample grids and FID.

Every random draw of a step (noise, timesteps, masks, class-label dropout) comes from a generator seeded by
`(seed, process, global step, micro-batch)` (`step_generator`), not from a global random state: a run resumed from a
checkpoint draws exactly what the uninterrupted run drew.

A step never waits on the host: the visible patches come from the mask generator's fixed count, a step whose loss or
gradient norm is not finite on any process is skipped on the device (the fused AdamW leaves the weights and its moments
as they were, as under a `GradScaler`), and the loss, the gradient norm and the skipped steps are summed on the device
and read back every `--logging_steps` (and at checkpoints), where `--max_consecutive_nonfinite_steps` in a row stop the
run, after saving."""

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from accelerate.logging import get_logger
from accelerate.utils import send_to_device
from diffusers import DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from ..losses import masked_mse_loss
from ..masking import MaskGenerator, visible_indices
from ..pipelines import MaskedDDPMPipeline
from .data import derive_seed, to_model_range
from .export import ema_weights, grid_sampler, log_grid, sample_grid
from .resume import TrainingState, save_training_checkpoint
from .setup import Run
from .streaming import StreamingImageDataset


logger = get_logger(__name__)

# Keys the training randomness apart from the data's streams (shuffle, per-sample augmentation) of the same seed.
_TRAINING_STREAM = 0x5452


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss was not finite for too many steps in a row."""


def step_generator(
    seed: int, process_index: int, global_step: int, micro_step: int = 0, device: torch.device | str = "cpu"
) -> torch.Generator:
    """
    The generator of all random draws of one micro-batch: a pure function of its arguments.

    Args:
        seed (`int`): `--seed`.
        process_index (`int`): the process (rank), so that processes draw different noise.
        global_step (`int`): the optimizer step being computed (0 for the first).
        micro_step (`int`, *optional*, defaults to 0): the micro-batch within gradient accumulation.
        device (`torch.device` or `str`, *optional*, defaults to `"cpu"`): where to draw.
    """
    seed = derive_seed(seed, _TRAINING_STREAM, process_index, global_step, micro_step)
    return torch.Generator(device=device).manual_seed(seed)


@dataclass
class DiffusionInputs:
    """One step's model inputs (`mask`: `True` = dropped, `ids_keep` the visible patches; some `class_labels` set to
    the null class) and `target`."""

    noisy: torch.Tensor
    timesteps: torch.LongTensor
    target: torch.Tensor
    mask: torch.BoolTensor | None = None
    class_labels: torch.LongTensor | None = None
    ids_keep: torch.LongTensor | None = None


def make_diffusion_inputs(
    clean: torch.Tensor,
    noise_scheduler: DDPMScheduler,
    generator: torch.Generator,
    mask_generator: MaskGenerator | None = None,
    grid_size: int | None = None,
    class_labels: torch.LongTensor | None = None,
    class_dropout_prob: float = 0.0,
    null_class_label: int | None = None,
) -> DiffusionInputs:
    """
    Draw noise, timesteps, a mask and label dropout for a batch of clean images, all from `generator`.

    Args:
        clean (`torch.Tensor`): (B, C, H, W) images in [-1, 1], or scaled latents.
        noise_scheduler (`DDPMScheduler`): adds the noise; its `prediction_type` sets the target.
        generator (`torch.Generator`): the source of every random draw (see `step_generator`).
        mask_generator (`MaskGenerator`, *optional*): draws the patch masks of masked pre-training.
        grid_size (`int`, *optional*): the model's patch grid side; needed with `mask_generator`.
        class_labels (`torch.LongTensor`, *optional*): (B,) labels of a class-conditional model.
        class_dropout_prob (`float`, *optional*, defaults to 0.0): chance of the null class (classifier-free guidance).
        null_class_label (`int`, *optional*): the null class (the model's `num_class_embeds`).
    """
    batch_size, device = clean.shape[0], clean.device
    noise = randn_tensor(clean.shape, generator=generator, device=device, dtype=clean.dtype)
    steps = noise_scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, steps, (batch_size,), generator=generator, device=generator.device).to(device)
    noisy = noise_scheduler.add_noise(clean, noise, timesteps)

    prediction_type = noise_scheduler.config.prediction_type  # one of three, checked by `build_noise_scheduler`
    if prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(clean, noise, timesteps)
    else:
        target = clean if prediction_type == "sample" else noise
    mask, ids_keep = None, None
    if mask_generator is not None:
        mask = mask_generator(batch_size, grid_size, generator=generator, device=device)
        ids_keep = visible_indices(mask, mask_generator.num_masked(grid_size))  # the count is known: no device read
    if class_labels is not None and class_dropout_prob > 0:
        drop = torch.rand(batch_size, generator=generator, device=generator.device).to(device) < class_dropout_prob
        class_labels = torch.where(drop, torch.full_like(class_labels, null_class_label), class_labels)
    return DiffusionInputs(noisy, timesteps, target, mask, class_labels, ids_keep)


def diffusion_loss(model: torch.nn.Module, inputs: DiffusionInputs) -> torch.Tensor:
    """The MSE of `model` (wrapped by accelerate or not) on `inputs` over the visible patches."""
    options = {"ids_keep": inputs.ids_keep} if inputs.ids_keep is not None else {"mask": inputs.mask}
    prediction = model(inputs.noisy, inputs.timesteps, class_labels=inputs.class_labels, **options).sample
    patch_size = getattr(model, "module", model).config.patch_size
    return masked_mse_loss(prediction, inputs.target, inputs.mask, patch_size)  # trusts the mask it was given


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
    dataset = run.dataloader.dataset
    streamed = isinstance(dataset, StreamingImageDataset)
    images, per_epoch = ("streamed", "unknown") if streamed else (len(dataset), len(run.dataloader))
    logger.info(
        "***** Running training (%s) *****\n  Images = %s (unreadable files skipped: %d), batches per epoch per "
        "process = %s, optimization steps = %d\n  Masks: %r, achieved mask rate %.3f",
        *("masked pre-training" if masked else "fine-tuning", images, dataset.num_skipped, per_epoch),
        *(run.max_train_steps, run.mask_generator, masked / transformer.num_patches),
    )
    batches = _resumable_batches(run.dataloader, accelerator, state.epoch, state.position)
    rank = accelerator.process_index
    disable = not accelerator.is_local_main_process
    fid_cache, label_dropout = {}, (config.class_dropout_prob, transformer.null_class_label)
    interval = _Interval(accelerator.device, state.global_step, state.nonfinite_consecutive)
    model.train()
    with tqdm(total=run.max_train_steps, initial=state.global_step, desc="Steps", disable=disable) as progress_bar:
        while state.global_step < run.max_train_steps:
            start = time.perf_counter()
            step_loss = torch.zeros((), device=accelerator.device)
            for micro_step in range(accumulation):
                state.epoch, state.position, batch = next(batches)
                clean = batch["latents"] if run.vae is not None else to_model_range(batch["pixel_values"])
                generator = step_generator(config.seed, rank, state.global_step, micro_step, clean.device)
                labels = batch.get("class_labels") if transformer.config.num_class_embeds else None
                inputs = make_diffusion_inputs(
                    clean, run.noise_scheduler, generator, run.mask_generator, grid_size, labels, *label_dropout
                )
                with contextlib.nullcontext() if micro_step == accumulation - 1 else accelerator.no_sync(model):
                    loss = diffusion_loss(model, inputs)
                    accelerator.backward(loss / accumulation)
                step_loss += loss.detach() / accumulation
                interval.images += clean.shape[0]

            grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            skipped = _skip_if_not_finite(run, step_loss, grad_norm)
            run.optimizer.step()
            if run.ema_model is not None and not accelerator.optimizer_step_was_skipped:
                run.ema_model.step(model.parameters())
            run.optimizer.zero_grad(set_to_none=True)
            run.lr_scheduler.step()
            interval.add(step_loss, grad_norm, skipped)
            state.global_step += 1
            state.train_seconds += time.perf_counter() - start
            progress_bar.update(1)

            step = state.global_step
            saving = step % config.checkpointing_steps == 0 or step == run.max_train_steps
            if step % config.logging_steps == 0 or saving:
                if _log_interval(run, state, interval, masked, progress_bar):
                    raise _nonfinite_error(run, state, save_training_checkpoint(run, state))
            # The last step is always saved: a kill while the pipeline is written loses nothing, and a run can be
            # extended later with a larger --max_train_steps.
            if saving:
                save_training_checkpoint(run, state)
            if config.validation_steps and step % config.validation_steps == 0 and step < run.max_train_steps:
                accelerator.on_main_process(_validation_grid)(run, step)
                accelerator.wait_for_everyone()
            if config.eval_fid_steps and step % config.eval_fid_steps == 0:
                _evaluate_fid(run, step, fid_cache)  # every process samples its share


def _skip_if_not_finite(run: Run, step_loss: torch.Tensor, grad_norm: torch.Tensor) -> torch.Tensor:
    """1.0 (on the device, no host read) when this step's loss, or without fp16 its gradient norm, is not finite on
    any process, else 0.0; the fused AdamW then leaves the weights and its moments as they were. With fp16 the
    gradient scaler skips overflowing steps itself (and lowers its scale): that is normal, not counted."""
    accelerator = run.accelerator
    finite = torch.isfinite(step_loss)
    if accelerator.scaler is None:
        finite &= torch.isfinite(grad_norm)
    skipped = (~finite).float()
    if accelerator.num_processes > 1:  # an all-reduce, no host read: every process skips the same steps
        skipped = accelerator.reduce(skipped, reduction="sum").clamp(max=1.0)
    if accelerator.scaler is None:
        run.optimizer.optimizer.found_inf = skipped  # read by the fused AdamW, as a GradScaler sets it
    return skipped


class _Interval:
    """What the steps since the last logging step add up to, on the device, and the images and time they took."""

    def __init__(self, device: torch.device, step: int, in_a_row: int = 0):
        self.sums = torch.zeros(3, device=device)  # loss and gradient norm of the updated steps, skipped steps
        self.in_a_row = torch.full((), float(in_a_row), device=device)  # non-finite steps in a row, up to now
        self.skip_values = torch.tensor([0.0, 0.0, 1.0], device=device)  # made once: a copy per step would wait
        self.first_step, self.images, self.start = step, 0, time.perf_counter()

    def add(self, step_loss: torch.Tensor, grad_norm: torch.Tensor, skipped: torch.Tensor) -> None:
        values = torch.stack([step_loss, grad_norm.float(), torch.zeros_like(step_loss)])
        self.sums += torch.where(skipped.bool(), self.skip_values, values)
        self.in_a_row = (self.in_a_row + 1) * skipped

    def read(self, step: int) -> tuple[float, float, int, int, int, float, int]:
        """The one host read of an interval: mean loss and gradient norm of its updated steps, its skipped steps, the
        skipped steps in a row, its steps, its seconds and images; then a new interval starts."""
        loss_sum, grad_norm_sum, skipped, in_a_row = torch.cat([self.sums, self.in_a_row[None]]).tolist()
        steps, updated = step - self.first_step, max(1, step - self.first_step - int(skipped))
        values = (loss_sum / updated, grad_norm_sum / updated, int(skipped), int(in_a_row), steps)
        values += (time.perf_counter() - self.start, self.images)
        self.sums.zero_()
        self.first_step, self.images, self.start = step, 0, time.perf_counter()
        return values


def _log_interval(run: Run, state: TrainingState, interval: _Interval, masked: int, progress_bar) -> bool:
    """Read the interval back (one host read), log it, warn of skipped steps; `True` when the run must stop."""
    accelerator, transformer, step = run.accelerator, run.transformer, state.global_step
    loss, grad_norm, skipped, in_a_row, steps, seconds, images = interval.read(step)
    state.nonfinite_total_skipped += skipped
    state.nonfinite_consecutive = in_a_row
    limit = run.config.max_consecutive_nonfinite_steps
    if skipped:
        logger.warning(
            "Step %d: %d of the last %d steps skipped, the loss or gradient norm not finite (NaN or inf); %d in a row, "
            "%d in total (stop at %d in a row).",
            *(step, skipped, steps, in_a_row, state.nonfinite_total_skipped, limit),
        )
    images_per_s = images * accelerator.num_processes / max(seconds, 1e-9)
    logs = {
        "train/lr": run.lr_scheduler.get_last_lr()[0],
        "train/mask_rate": masked / transformer.num_patches,
        "train/nonfinite_skipped_total": state.nonfinite_total_skipped,
        "train/seconds": state.train_seconds,
        "perf/images_per_s": images_per_s,
        "perf/tokens_per_s": images_per_s * (transformer.num_patches - masked),
    }
    if skipped < steps:
        logs |= {"train/loss": loss, "train/grad_norm": grad_norm}
    if run.ema_model is not None and run.ema_model.cur_decay_value is not None:
        logs["train/ema_decay"] = run.ema_model.cur_decay_value
    progress_bar.set_postfix(loss=logs.get("train/loss", float("nan")), lr=logs["train/lr"])
    accelerator.log(logs, step=step)
    return in_a_row >= limit


def _nonfinite_error(run: Run, state: TrainingState, checkpoint) -> NonFiniteLossError:
    """The error that stops a run after too many non-finite steps: the steps, likely causes and where the state is."""
    causes = [f"a learning rate too high for this model (--learning_rate={run.config.learning_rate})"]
    if run.accelerator.mixed_precision == "fp16":
        causes.insert(0, "float16 overflow (--mixed_precision=fp16: try bf16, or no)")
    elif run.accelerator.mixed_precision == "bf16":
        causes.append("low precision (--mixed_precision=bf16: try no)")
    causes.append("broken training images (NaN pixels)")
    first = state.global_step - state.nonfinite_consecutive + 1
    return NonFiniteLossError(
        f"Stopping at step {state.global_step}: the loss was not finite for {state.nonfinite_consecutive} steps in a "
        f"row (steps {first} to {state.global_step}). Likely causes: {'; '.join(causes)}. "
        f"The last good weights were saved in {checkpoint}: fix the cause, then resume with --resume_from_checkpoint "
        "latest."
    )


def _resumable_batches(dataloader, accelerator, epoch: int, position: int) -> Iterator[tuple]:
    """Endless `(epoch, position, batch)` from `(epoch, position)`, the position being the one after this batch: an
    epoch's data order is a function of the seed and the epoch, so skipping the first `position` batches resumes."""
    if isinstance(dataloader.dataset, StreamingImageDataset):
        yield from _stream_batches(dataloader, accelerator, epoch, position)
    while True:
        dataloader.set_epoch(epoch)
        loader = accelerator.skip_first_batches(dataloader, position) if position else dataloader
        for index, batch in enumerate(loader, start=position + 1):
            yield (epoch, index, batch) if index < len(dataloader) else (epoch + 1, 0, batch)
        epoch, position = epoch + 1, 0


def _stream_batches(dataloader, accelerator, epoch: int, position: int) -> Iterator[tuple]:
    """`_resumable_batches` of a stream (`--streaming`): it resumes from the positions its dataset holds, which learns
    of every batch used; the loader is not accelerate's, so batches are sent to the device here."""
    dataset = dataloader.dataset
    while True:
        dataset.set_epoch(epoch)
        index, fresh = position, not dataset.positions
        for index, batch in enumerate(dataloader, start=position + 1):
            dataset.used(batch.pop("stream")[-1])
            yield epoch, index, send_to_device(batch, accelerator.device, non_blocking=True)
        if fresh and index == 0:
            raise RuntimeError(
                f"Process {accelerator.process_index} read no image of {dataset.description} in epoch {epoch}: its "
                "part of the stream is empty or unreadable. Fix: check the data, or use fewer processes."
            )
        epoch, position = epoch + 1, 0


def _validation_grid(run: Run, step: int) -> None:
    with ema_weights(run.transformer, run.ema_model):
        pipeline = MaskedDDPMPipeline(transformer=run.transformer, scheduler=run.noise_scheduler, vae=run.vae)
        grid = sample_grid(pipeline, *run.grid_options)
    (run.output_dir / "samples").mkdir(exist_ok=True)
    grid.save(run.output_dir / "samples" / f"step-{step:06d}.png")
    log_grid(run.accelerator, grid, step)


def _evaluate_fid(run: Run, step: int, cache: dict) -> None:
    """FID-N against the training data (reference statistics cached by `diffusers_maskdm.evaluation`), sampled as the
    grids are (`--validation_scheduler`), so that FID scores what the grids show; every process computes its share of
    the reference statistics and samples its share of the images."""
    from ..evaluation import compute_fid_for_pipeline, load_feature_extractor, reference_statistics_for_training_data

    config = run.config
    if not cache:
        cache["extractor"] = load_feature_extractor("fid-helper", device=run.accelerator.device)
        data = ("dataset_name", "dataset_config_name", "train_data_dir", "image_column", "num_channels", "resolution")
        cache["reference"] = reference_statistics_for_training_data(
            cache["extractor"], **{name: getattr(config, name) for name in data}, data_cache_dir=config.cache_dir
        )
    with ema_weights(run.transformer, run.ema_model):
        sampler = grid_sampler(run.noise_scheduler.config, config.validation_scheduler)
        pipeline = MaskedDDPMPipeline(transformer=run.transformer, scheduler=sampler, vae=run.vae)
        options = dict(num_inference_steps=config.validation_inference_steps, seed=config.seed)
        options["progress"] = run.accelerator.is_local_main_process
        fid = compute_fid_for_pipeline(
            pipeline, cache["reference"], cache["extractor"], config.eval_fid_num_images, **options
        )
    logger.info("Step %d: FID-%d = %.3f", step, config.eval_fid_num_images, fid)
    run.accelerator.log({f"eval/fid_{config.eval_fid_num_images}": fid}, step=step)
