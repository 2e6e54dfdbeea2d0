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
"""Masked denoising score matching: the diffusion loss restricted to the visible patches."""

import torch

from .masking import patch_mask_to_pixel_mask


def masked_mse_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.BoolTensor | None, patch_size: int, reduction: str = "mean"
) -> torch.Tensor:
    r"""
    Mean squared error over the **visible** pixels only (MaskDM's masked denoising score matching).

    Each sample's error is averaged over its visible pixels and channels, then over samples, so every image counts the
    same whatever its mask; the target is whatever the model predicts (epsilon, v, the clean sample). Only shapes are
    checked (no device sync): the model checked the mask's contents when it dropped the tokens.

    Args:
        pred (`torch.Tensor`): the model output, (batch, C, H, W).
        target (`torch.Tensor`): the regression target, same shape.
        mask (`torch.BoolTensor` or `None`): (batch, num_patches), `True` = masked; `None` gives the ordinary MSE.
        patch_size (`int`): the model's patch size, to expand the patch mask to pixels.
        reduction (`str`, *optional*, defaults to `"mean"`): `"mean"` for a scalar, `"none"` for one value per sample.
    """
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(
            f"`pred` and `target` must have the same shape (batch, channels, height, width), got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}."
        )
    if reduction not in ("mean", "none"):
        raise ValueError(f"`reduction` must be 'mean' or 'none', got {reduction!r}.")
    batch_size, channels, height, width = pred.shape
    # The error is taken in float32 so a bf16/fp16 prediction does not lose the small differences late in training.
    squared_error = (pred.float() - target.float()) ** 2
    if mask is None:
        per_sample = squared_error.mean(dim=(1, 2, 3))
    else:
        if not isinstance(patch_size, int) or patch_size < 1 or height % patch_size or width % patch_size:
            raise ValueError(
                f"`patch_size` must be a positive integer dividing the image size {height}x{width}, got {patch_size!r}."
            )
        num_patches = (height // patch_size) * (width // patch_size)
        if mask.dtype != torch.bool or tuple(mask.shape) != (batch_size, num_patches):
            raise ValueError(
                f"`mask` must be a bool tensor of shape (batch_size, num_patches) = ({batch_size}, {num_patches}), "
                f"got {mask.dtype} of shape {tuple(mask.shape)}."
            )
        visible = (~patch_mask_to_pixel_mask(mask, patch_size, width // patch_size)).to(squared_error.dtype)
        per_sample = (squared_error * visible).sum(dim=(1, 2, 3)) / (visible.sum(dim=(1, 2, 3)) * channels)
    return per_sample.mean() if reduction == "mean" else per_sample
