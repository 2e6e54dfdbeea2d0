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
"""A tiny random diffusers `AutoencoderKL` for the latent-space tests (no download): importable by name from any test
folder (`from vae_testing import make_tiny_vae`); tests/conftest.py offers it as the `tiny_vae` fixture."""

import torch
from diffusers import AutoencoderKL


TINY_VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    block_out_channels=(8, 16),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=32,
)


def make_tiny_vae(seed: int = 0, **overrides) -> AutoencoderKL:
    """A randomly initialised `AutoencoderKL` with 2x downsampling: 32x32x3 images <-> 16x16x4 latents."""
    torch.manual_seed(seed)
    return AutoencoderKL(**{**TINY_VAE_CONFIG, **overrides}).eval()
