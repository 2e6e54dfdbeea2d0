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
"""Fixtures for the pipeline tests: tiny MaskDM pipelines (the loopback Hub fixture is in tests/conftest.py)."""

import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

from diffusers_maskdm import MaskedDiTModel
from diffusers_maskdm.pipelines import MaskedDDPMPipeline


TINY_CONFIG = dict(sample_size=8, patch_size=2, hidden_size=32, num_layers=2, num_attention_heads=2)


def make_pipeline(seed: int = 0, **config) -> MaskedDDPMPipeline:
    """A randomly initialised 8x8 pipeline; the output projection gets random weights too, so samples depend on it."""
    torch.manual_seed(seed)
    transformer = MaskedDiTModel(**{**TINY_CONFIG, **config}).eval()
    torch.nn.init.normal_(transformer.proj_out.weight, std=0.05)
    pipe = MaskedDDPMPipeline(transformer=transformer, scheduler=DDPMScheduler(num_train_timesteps=100))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def pipe() -> MaskedDDPMPipeline:
    return make_pipeline()


@pytest.fixture
def class_pipe() -> MaskedDDPMPipeline:
    return make_pipeline(num_class_embeds=3)


def save_tiny_ddpm_pipeline(folder) -> None:
    """Saves a tiny diffusers `DDPMPipeline` (a UNet, not a MaskDM transformer) to `folder`."""
    unet = UNet2DModel(
        sample_size=8,
        block_out_channels=(8, 8),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(folder)
