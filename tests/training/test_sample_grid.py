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
"""The sample grids of the training script: the chosen sampler, DDIM without clipping, 512 px, named in the card."""

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from diffusers_maskdm import MaskedDiTModel
from diffusers_maskdm.pipelines import MaskedDDPMPipeline
from diffusers_maskdm.training.export import GRID_SCHEDULERS, sample_grid, save_pipeline


def tiny_pipeline() -> MaskedDDPMPipeline:
    torch.manual_seed(0)
    model = MaskedDiTModel(sample_size=8, patch_size=2, hidden_size=32, num_layers=2, num_attention_heads=2).eval()
    return MaskedDDPMPipeline(transformer=model, scheduler=DDPMScheduler(num_train_timesteps=100))


@pytest.mark.parametrize("scheduler", sorted(GRID_SCHEDULERS))
def test_saved_grid_is_scaled_up_to_512_pixels(tmp_path, scheduler):
    pipe = tiny_pipeline()
    grid = save_pipeline(tmp_path, pipe.transformer, pipe.scheduler, grid_options=(4, 3, 0, scheduler))
    assert grid.size == (512, 512)  # 2x2 images of 8 px, each pixel a 32x32 block (nearest)
    saved = np.asarray(PIL.Image.open(tmp_path / "samples.png"))
    assert np.array_equal(saved, np.asarray(grid)) and (saved[:32, :32] == saved[0, 0]).all()


def test_ddim_grid_does_not_clip_the_image_estimate():
    pipe = tiny_pipeline()  # the training scheduler's config has clip_sample=True (diffusers' default)
    grid = np.asarray(sample_grid(pipe, num_images=4, num_inference_steps=3, scheduler="ddim"))[::32, ::32]
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False)
    images = pipe(batch_size=4, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np")
    expected = np.concatenate([np.concatenate(list(images.images[i : i + 2]), axis=1) for i in (0, 2)], axis=0)
    assert np.array_equal(grid, (expected * 255).round().astype(np.uint8))


def test_model_card_names_the_sampler_of_the_grid(tmp_path):
    pipe = tiny_pipeline()
    save_pipeline(tmp_path, pipe.transformer, pipe.scheduler, grid_options=(4, 3, 0, "ddpm"))
    assert "DDPMScheduler, 3 steps, seed 0" in (tmp_path / "README.md").read_text()
