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
"""Helpers of the evaluation tests: synthetic images and a tiny, fixed, texture-sensitive feature network."""

import torch
import torch.nn.functional as F
from torch import nn


def make_shape_images(num_images: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Float images in [0, 1]: coloured discs and squares on a dark background, drawn from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = []
    for _ in range(num_images):
        image = (torch.rand(3, 1, 1, generator=generator) * 0.5).expand(3, size, size).clone()
        for _ in range(3):
            colour = torch.rand(3, 1, 1, generator=generator)
            cx, cy = torch.randint(4, size - 4, (2,), generator=generator)
            radius = int(torch.randint(size // 10, size // 4, (1,), generator=generator))
            if torch.rand(1, generator=generator) < 0.5:
                inside = (xx - cx) ** 2 + (yy - cy) ** 2 < radius**2
            else:
                inside = ((xx - cx).abs() < radius) & ((yy - cy).abs() < radius)
            image = torch.where(inside, colour, image)
        images.append(image)
    return torch.stack(images)


def add_noise(images: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    return (images + sigma * noise).clamp(0, 1)


def box_blur(images: torch.Tensor, kernel_size: int) -> torch.Tensor:
    weight = torch.ones(images.shape[1], 1, kernel_size, kernel_size) / kernel_size**2
    low, high = kernel_size // 2, (kernel_size - 1) // 2
    padded = F.pad(images, (low, high, low, high), mode="replicate")
    return F.conv2d(padded, weight, groups=images.shape[1])


class TextureNet(nn.Module):
    """Mean colour plus mean absolute responses of two random conv layers: a 35-d feature that sees edges, noise
    and colour, so it ranks degradations like a (much larger) Inception would. Counts its forward calls."""

    def __init__(self, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        with torch.no_grad():
            for conv in (self.conv1, self.conv2):
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator))
                conv.bias.zero_()
        self.calls = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        h1 = self.conv1(images)
        h2 = self.conv2(torch.relu(h1))
        return torch.cat([images.mean((2, 3)), h1.abs().mean((2, 3)), h2.abs().mean((2, 3))], dim=1)


def save_tiny_dinov2(path, num_hidden_layers: int = 1) -> str:
    """A tiny random transformers Dinov2Model saved as a folder, loadable offline as `"dinov2:<folder>"`."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    Dinov2Model(config).save_pretrained(path)
    return str(path)
