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
"""The last phase of a run, `export`: the output folder as a `MaskedDDPMPipeline` with its card, grid and Hub push
(the layout: `docs/training.md`, "What a run writes"). Beyond `save_pretrained`, the pipeline is staged and moved in
with `model_index.json` last: a kill leaves no `model_index.json` or a complete pipeline."""

import contextlib
import os
import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from accelerate.logging import get_logger
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from safetensors import SafetensorError

from ..caching import is_disk_full
from ..hub import hub_repo_id, make_sample_grid, save_model_card, upload_pipeline_folder
from ..pipelines import MaskedDDPMPipeline
from .checkpointing import TEMP_PREFIX, CheckpointWriteError, publish_folder
from .model_source import NON_EMA_VARIANT
from .resume import TrainingState
from .setup import Run


logger = get_logger(__name__)

# What a pipeline folder holds besides `model_index.json`, which is moved in last.
PIPELINE_FILES = ("scheduler", "transformer", "vae", "README.md", "samples.png")
# The samplers of the sample grids (`--validation_scheduler`; docs/training.md says which shows what): a class and its
# settings. DDIM runs without `clip_sample`, which leaves a young noise-predicting model's samples as noise.
GRID_SCHEDULERS = {
    "ddpm": (DDPMScheduler, {}),
    "ddim": (DDIMScheduler, {"clip_sample": False}),
    "dpmsolver++": (DPMSolverMultistepScheduler, {}),
    "sde-dpmsolver++": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++"}),
}


def export(run: Run, state: TrainingState) -> Path:
    """Write the final pipeline, its card and grid into `--output_dir` (main process), then push it if asked."""
    config, accelerator, transformer = run.config, run.accelerator, run.transformer
    # The processes must end with the same weights (DDP keeps them so; this says it did).
    params = [p.detach().double() for p in transformer.parameters()]
    fingerprint = torch.stack([sum(p.sum() for p in params), sum((p * p).sum() for p in params)]).reshape(1, 2)
    fingerprints = accelerator.gather(fingerprint.to(accelerator.device))
    if not bool((fingerprints == fingerprints[0]).all()):
        raise RuntimeError(f"The {accelerator.num_processes} processes ended with different weights: {fingerprints}")
    if accelerator.num_processes > 1:
        logger.info("The weights are identical on all %d processes.", accelerator.num_processes)
    if accelerator.is_main_process:
        name = config.pretrained_model_name_or_path
        hub_id = hub_repo_id(name)  # a card names a Hub id, never a local path
        training = {
            "stage": config.stage,
            "mask_kind": config.mask_type if run.mask_generator else None,
            "mask_rate": run.mask_generator.achieved_mask_rate(transformer.grid_size) if run.mask_generator else None,
            "max_train_steps": run.max_train_steps,
            "train_batch_size": config.train_batch_size
            * accelerator.num_processes
            * config.gradient_accumulation_steps,
            "resolution": config.resolution,
            "data": run.dataloader.dataset.description,
            "max_train_samples": config.max_train_samples,
            "learning_rate": config.learning_rate,
            "use_ema": config.use_ema,
            "mixed_precision": accelerator.mixed_precision,
            "prediction_type": run.noise_scheduler.config.prediction_type,
            "fine-tuned from": hub_id or (name and "a local checkpoint"),
        }
        training = {key: value for key, value in training.items() if value is not None}
        card = dict(repo_id=run.repo_id or config.hub_model_id, training=training, base_model=hub_id)
        options = (run.ema_model, run.grid_options, run.vae)
        grid = save_pipeline(run.output_dir, transformer, run.noise_scheduler, *options, **card)
        log_grid(accelerator, grid, state.global_step)
        logger.info("Saved the MaskedDDPMPipeline, its model card and samples.png in %s", run.output_dir)
        if run.repo_id is not None:
            info = upload_pipeline_folder(  # the pipeline's files only, not checkpoints or logs
                run.output_dir, run.repo_id, private=config.hub_private_repo, token=config.hub_token
            )
            logger.info("Pushed to %s", getattr(info, "commit_url", run.repo_id))
    accelerator.wait_for_everyone()
    return run.output_dir


@contextlib.contextmanager
def ema_weights(model, ema_model=None):
    """Context: `model` in eval mode, holding the EMA weights when there is an EMA; as it was afterwards."""
    was_training = model.training
    model.eval()
    if ema_model is not None:
        ema_model.store(model.parameters())
        ema_model.copy_to(model.parameters())
    try:
        yield model
    finally:
        if ema_model is not None:
            ema_model.restore(model.parameters())
        model.train(was_training)


def grid_sampler(scheduler_config, name: str = "ddpm"):
    """The `GRID_SCHEDULERS` sampler `name` built from the training scheduler's config."""
    scheduler_class, settings = GRID_SCHEDULERS[name]
    return scheduler_class.from_config(scheduler_config, **settings)


def sample_grid(
    pipeline, num_images: int = 16, num_inference_steps: int = 50, seed: int = 0, scheduler: str = "ddpm"
) -> PIL.Image.Image:
    """A grid of `num_images` samples of the `scheduler` sampler (a `GRID_SCHEDULERS` name), with a progress bar; a
    class-conditional model cycles through its classes."""
    num_classes = pipeline.transformer.config.num_class_embeds
    class_labels = [i % num_classes for i in range(num_images)] if num_classes else None
    pipeline.set_progress_bar_config(desc="Sample grid", leave=False)
    sampler = grid_sampler(pipeline.scheduler.config, scheduler)
    options = dict(num_inference_steps=num_inference_steps, seed=seed, class_labels=class_labels, scheduler=sampler)
    return make_sample_grid(pipeline, num_images=num_images, **options)


def log_grid(accelerator, grid: PIL.Image.Image, step: int) -> None:
    """Show `grid` in TensorBoard, when it is a tracker."""
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_image("samples", np.asarray(grid.convert("RGB")), step, dataformats="HWC")


def save_pipeline(
    output_dir: str | os.PathLike,
    transformer,
    noise_scheduler: DDPMScheduler,
    ema_model=None,
    grid_options: tuple = (16, 50, 0, "ddpm"),
    vae=None,
    repo_id: str | None = None,
    **card_kwargs,
) -> PIL.Image.Image:
    """Write the final `MaskedDDPMPipeline` (with `ema_model`: the EMA weights, the raw ones as its `non_ema` variant;
    with `vae`: a latent pipeline),
    its card (`hub.save_model_card`'s `card_kwargs`; `repo_id`: the folder's name by default) and the grid of
    `sample_grid(pipeline, *grid_options)`, which it returns. Raises `CheckpointWriteError` when a file cannot be
    written (a full disk), leaving no staged files."""
    output_dir = Path(output_dir)
    staging = output_dir / f"{TEMP_PREFIX}pipeline"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with ema_weights(transformer, ema_model):
            pipeline = MaskedDDPMPipeline(transformer=transformer, scheduler=noise_scheduler, vae=vae)
            pipeline.save_pretrained(staging, safe_serialization=True)
            grid = sample_grid(pipeline, *grid_options)
        if ema_model is not None:
            transformer.save_pretrained(staging / "transformer", variant=NON_EMA_VARIANT, safe_serialization=True)
        images, steps, seed, sampler = grid_options
        scheduler_class, settings = GRID_SCHEDULERS[sampler]
        sampler = ", ".join([scheduler_class.__name__, *(f"{k}={v}" for k, v in settings.items()), f"{steps} steps"])
        sampler += f", seed {seed}" + ", EMA weights" * (ema_model is not None)
        if vae is not None:  # what it was loaded from: the card links a Hub id and never writes a local path
            card_kwargs.setdefault("vae", vae.config.get("_name_or_path"))
        card_kwargs["training"] = {**card_kwargs.get("training", {}), "sample_grid": sampler}
        save_model_card(staging, repo_id or output_dir.resolve().name, sample_grid=grid, **card_kwargs)
        # Moved in part by part, `model_index.json` (removed first) last: until then the folder is no pipeline.
        index = output_dir / "model_index.json"
        index.unlink(missing_ok=True)
        for name in PIPELINE_FILES:
            if (staging / name).is_dir():
                publish_folder(staging / name, output_dir / name)
            elif (staging / name).exists():
                os.replace(staging / name, output_dir / name)
        os.replace(staging / "model_index.json", index)
    except (OSError, SafetensorError) as error:  # a full disk, a quota, permissions: one line, not half a pipeline
        fix = "The disk is full: free space, then" if is_disk_full(error) else "Fix the cause, then"
        raise CheckpointWriteError(
            f"Could not write the pipeline into {output_dir} ({type(error).__name__}: {error}). {fix} run again with "
            "--resume_from_checkpoint latest: the last step is checkpointed, so only the export runs."
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return grid
