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
"""Model presets for the training script: `tiny` for CPU, and the paper's U-ViT-S / U-ViT-M backbones."""

from typing import Any


MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # Small enough to pre-train on two CPU cores in minutes (the README demo).
    "tiny": {"hidden_size": 128, "num_layers": 5, "num_attention_heads": 4, "mlp_ratio": 4.0},
    # The paper's backbones (MaskDM uses U-ViT): U-ViT-S and U-ViT-M.
    "small": {"hidden_size": 512, "num_layers": 13, "num_attention_heads": 8, "mlp_ratio": 4.0},
    "base": {"hidden_size": 768, "num_layers": 17, "num_attention_heads": 12, "mlp_ratio": 4.0},
}
"""Transformer sizes by preset name; the patch size comes from the resolution (see `patch_size_for_resolution`)."""

# U-ViT keeps a 16x16 token grid: patch 2 at 32 px (CIFAR-10), patch 4 at 64 px (CelebA, ImageNet 64). Fewer than
# 4x4 tokens leave nothing to mask.
MAX_GRID_SIZE = 16
MIN_GRID_SIZE = 4


def patch_size_for_resolution(resolution: int) -> int:
    """
    The smallest patch size of at least 2 that divides `resolution` into a token grid of at most 16x16 (and at least
    4x4).

    32 px -> 2, 64 px -> 4, 128 px -> 8, 256 px -> 16, 16 px -> 2, 72 px -> 6.

    Raises:
        `ValueError`: if no such patch size exists (e.g. a prime resolution).
    """
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"`resolution` must be an integer of at least 2, got {resolution!r}.")
    for patch_size in range(2, resolution + 1):
        grid_size = resolution // patch_size
        if resolution % patch_size == 0 and MIN_GRID_SIZE <= grid_size <= MAX_GRID_SIZE:
            return patch_size
    raise ValueError(
        f"`resolution`={resolution} has no patch size >= 2 dividing it into a grid of {MIN_GRID_SIZE}x{MIN_GRID_SIZE} "
        f"to {MAX_GRID_SIZE}x{MAX_GRID_SIZE} tokens: use a resolution that is a multiple of 16 (e.g. 32 or 64), or "
        "give the patch size yourself with `--model_config`."
    )


def preset_config(
    name: str, resolution: int, in_channels: int = 3, num_class_embeds: int | None = None
) -> dict[str, Any]:
    """
    The `MaskedDiTModel` config of preset `name` for square images of side `resolution`.

    Args:
        name (`str`): one of `MODEL_PRESETS` (`"tiny"`, `"small"`, `"base"`).
        resolution (`int`): the image side in pixels (the model's `sample_size`).
        in_channels (`int`, *optional*, defaults to 3): 1 for grayscale, 3 for RGB.
        num_class_embeds (`int`, *optional*): the number of classes of a class-conditional model.

    Returns:
        `dict`: keyword arguments for `MaskedDiTModel(**config)`.
    """
    if name not in MODEL_PRESETS:
        raise ValueError(f"`model_preset` must be one of {sorted(MODEL_PRESETS)}, got {name!r}.")
    return {
        "sample_size": resolution,
        "in_channels": in_channels,
        "patch_size": patch_size_for_resolution(resolution),
        **MODEL_PRESETS[name],
        "num_class_embeds": num_class_embeds,
    }
