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
"""The end of a run: the output folder as a `MaskedDDPMPipeline` with its model card, sample grid and Hub push.

Layout of `output_dir` after training:

```
model_index.json, scheduler/, transformer/   the pipeline; transformer/ holds the EMA weights when --use_ema
transformer/diffusion_pytorch_model.non_ema.safetensors   the raw weights (only with --use_ema)
README.md, samples.png                        model card and a sample grid
samples/step-<N>.png                          validation grids (--validation_steps)
checkpoint-<N>/                               resumable checkpoints
logs/                                         TensorBoard
```

The pipeline is written to a temporary folder first and its parts are renamed into place, `model_index.json` last,
so a kill leaves either the previous pipeline, no `model_index.json`, or the complete new pipeline.
"""

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import PIL.Image
from diffusers import DDPMScheduler

from .checkpointing import TEMP_PREFIX, publish_folder
from .model_source import NON_EMA_VARIANT


PIPELINE_FILES = ("model_index.json", "scheduler", "transformer", "README.md", "samples.png")
"""What of `output_dir` makes up the pipeline (and is pushed to the Hub)."""


def sample_grid(pipeline, num_images: int = 16, num_inference_steps: int = 50, seed: int = 0) -> PIL.Image.Image:
    """A grid of `num_images` DDIM samples; a class-conditional model cycles through its classes."""
    from ..hub import make_sample_grid

    num_classes = pipeline.transformer.config.num_class_embeds
    class_labels = [i % num_classes for i in range(num_images)] if num_classes else None
    pipeline.set_progress_bar_config(disable=True)
    return make_sample_grid(
        pipeline, num_images=num_images, num_inference_steps=num_inference_steps, seed=seed, class_labels=class_labels
    )


def save_pipeline(
    output_dir: str | os.PathLike,
    transformer,
    noise_scheduler: DDPMScheduler,
    ema_model=None,
    repo_id: str | None = None,
    training: dict[str, Any] | None = None,
    base_model: str | None = None,
    num_grid_images: int = 16,
    grid_inference_steps: int = 50,
    seed: int = 0,
) -> PIL.Image.Image:
    """
    Write the final `MaskedDDPMPipeline`, its model card and a sample grid into `output_dir` (main process only).

    With `ema_model`, the pipeline's transformer holds the EMA weights and the raw weights are saved beside them as
    the `non_ema` variant; `transformer` is left with its raw weights.

    Args:
        output_dir (`str` or `os.PathLike`): the run's output folder.
        transformer (`MaskedDiTModel`): the trained (unwrapped) model.
        noise_scheduler (`DDPMScheduler`): the training scheduler, saved with the pipeline.
        ema_model (`EMAModel`, *optional*): the EMA of the weights.
        repo_id (`str`, *optional*): the repo the card describes (defaults to the folder's name).
        training (`dict`, *optional*): the card's training table (see `diffusers_maskdm.hub.build_model_card`).
        base_model (`str`, *optional*): the Hub repo this model was fine-tuned from.
        num_grid_images (`int`, *optional*, defaults to 16): images in `samples.png`.
        grid_inference_steps (`int`, *optional*, defaults to 50): DDIM steps of the grid.
        seed (`int`, *optional*, defaults to 0): the grid's seed.

    Returns:
        `PIL.Image.Image`: the sample grid.
    """
    from ..hub import save_model_card
    from ..pipelines import MaskedDDPMPipeline

    output_dir = Path(output_dir)
    staging = output_dir / f"{TEMP_PREFIX}pipeline"
    shutil.rmtree(staging, ignore_errors=True)
    was_training = transformer.training
    transformer.eval()
    try:
        if ema_model is not None:
            ema_model.store(transformer.parameters())
            ema_model.copy_to(transformer.parameters())
        try:
            pipeline = MaskedDDPMPipeline(transformer=transformer, scheduler=noise_scheduler)
            pipeline.save_pretrained(staging, safe_serialization=True)
            grid = sample_grid(pipeline, num_grid_images, grid_inference_steps, seed)
        finally:
            if ema_model is not None:
                ema_model.restore(transformer.parameters())
        if ema_model is not None:
            transformer.save_pretrained(staging / "transformer", variant=NON_EMA_VARIANT, safe_serialization=True)
    finally:
        transformer.train(was_training)
    save_model_card(
        staging,
        repo_id or output_dir.resolve().name,
        sample_grid=grid,
        training=training,
        model_config=dict(transformer.config),
        base_model=base_model,
    )
    _publish_pipeline(staging, output_dir)
    return grid


def _publish_pipeline(staging: Path, output_dir: Path) -> None:
    """Move the staged pipeline into `output_dir`: without `model_index.json` until every part is in place."""
    index = output_dir / "model_index.json"
    if index.exists():
        os.remove(index)
    for name in PIPELINE_FILES:
        if name == "model_index.json" or not (staging / name).exists():
            continue
        if (staging / name).is_dir():
            publish_folder(staging / name, output_dir / name)
        else:
            os.replace(staging / name, output_dir / name)
    os.replace(staging / "model_index.json", index)
    shutil.rmtree(staging, ignore_errors=True)


def push_pipeline(
    output_dir: str | os.PathLike, repo_id: str, private: bool = False, commit_message: str | None = None
):
    """
    Upload the pipeline of `output_dir` (its `PIPELINE_FILES`, not checkpoints or logs) with its model card.

    Returns:
        `huggingface_hub.CommitInfo` of the upload.
    """
    from ..hub import upload_pipeline_folder

    output_dir = Path(output_dir)
    with tempfile.TemporaryDirectory(prefix="maskdm-push-") as tmp:
        for name in PIPELINE_FILES:
            source = output_dir / name
            if source.is_dir():
                shutil.copytree(source, Path(tmp) / name)
            elif source.is_file():
                shutil.copy2(source, Path(tmp) / name)
        return upload_pipeline_folder(tmp, repo_id, private=private, commit_message=commit_message)
