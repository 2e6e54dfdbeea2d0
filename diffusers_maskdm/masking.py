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
"""Mask generators for masked diffusion pre-training, and the small functions that turn a mask into what a model needs.

A mask is a bool tensor of shape `(batch, num_patches)` over the patch grid in row-major order, `True` = masked
(dropped). Every row hides the same number of patches, so the visible tokens of a batch stack into one tensor.
"""

import math
from dataclasses import dataclass

import torch


MASK_KINDS = ("patch", "block", "crop")
MASK_ROUNDINGS = ("nearest", "floor")


@dataclass
class MaskGenerator:
    r"""
    Draws random patch masks for masked pre-training, vectorised over the batch.

    Args:
        kind (`str`, *optional*, defaults to `"block"`):
            `"patch"`: uniformly chosen patches. `"block"`: whole `block_size` x `block_size` blocks of patches.
            `"crop"`: one visible square window of patches at a random position, everything else masked.
        mask_rate (`float`, *optional*, defaults to 0.9):
            Share of patches to mask, in `[0, 1)`. The count is rounded (`rounding`); blocks and crops round it to
            whole blocks or a square window: see `achieved_mask_rate`.
        block_size (`int`, *optional*, defaults to 2):
            Side of a block in patches (`kind="block"` only).
        crop_size (`int`, *optional*):
            Side of the visible window in patches (`kind="crop"` only). Defaults to the side that keeps
            `1 - mask_rate` of the patches visible, rounded; when given, it sets the achieved rate.
        rounding (`str`, *optional*, defaults to `"nearest"`):
            How `mask_rate` becomes a count. `"nearest"`: the count nearest to `mask_rate` of the patches (blocks).
            `"floor"`: the largest count not above it, as the official MaskDM code does (so 2x2 blocks at 90 % of a
            16x16 grid mask 57 of 64 blocks instead of 58, and 8x8 blocks at 90 % mask 3 of 4, 75 %).

    Example:
        ```py
        >>> gen = MaskGenerator("block", mask_rate=0.75, block_size=2)
        >>> mask = gen(batch_size=4, grid_size=16, generator=torch.Generator().manual_seed(0))
        >>> mask.shape, mask.sum(dim=1).tolist()
        (torch.Size([4, 256]), [192, 192, 192, 192])
        ```
    """

    kind: str = "block"
    mask_rate: float = 0.9
    block_size: int = 2
    crop_size: int | None = None
    rounding: str = "nearest"

    def __post_init__(self):
        if self.kind not in MASK_KINDS:
            raise ValueError(f"`kind` must be one of {MASK_KINDS}, got {self.kind!r}.")
        if not isinstance(self.mask_rate, (int, float)) or not 0.0 <= float(self.mask_rate) < 1.0:
            raise ValueError(
                f"`mask_rate` must be a number in [0, 1), got {self.mask_rate!r}: a rate of 1 would hide every patch."
            )
        if not isinstance(self.block_size, int) or self.block_size < 1:
            raise ValueError(f"`block_size` must be a positive integer, got {self.block_size!r}.")
        if self.crop_size is not None and (not isinstance(self.crop_size, int) or self.crop_size < 1):
            raise ValueError(f"`crop_size` must be a positive integer or None, got {self.crop_size!r}.")
        if self.rounding not in MASK_ROUNDINGS:
            raise ValueError(f"`rounding` must be one of {MASK_ROUNDINGS}, got {self.rounding!r}.")
        self.mask_rate = float(self.mask_rate)

    def validate(self, grid_size: int) -> None:
        """Raises a `ValueError` when this generator cannot mask a `grid_size` x `grid_size` patch grid."""
        if not isinstance(grid_size, int) or grid_size < 1:
            raise ValueError(f"`grid_size` must be a positive integer, got {grid_size!r}.")
        if self.kind == "block" and grid_size % self.block_size != 0:
            raise ValueError(
                f"`block_size`={self.block_size} does not divide the patch grid of {grid_size}x{grid_size}: "
                f"choose a block size among {[d for d in range(1, grid_size + 1) if grid_size % d == 0]}."
            )
        if self.kind == "crop" and self.crop_size is not None and self.crop_size > grid_size:
            raise ValueError(
                f"`crop_size`={self.crop_size} is larger than the patch grid of {grid_size}x{grid_size}: "
                f"use a crop size of at most {grid_size}."
            )
        if self.num_masked(grid_size) >= grid_size**2:
            raise ValueError(
                f"`mask_rate`={self.mask_rate} hides every patch of a {grid_size}x{grid_size} grid with "
                f"kind={self.kind!r}: lower the mask rate."
            )

    def _crop_side(self, grid_size: int) -> int:
        if self.crop_size is not None:
            return self.crop_size
        if self.rounding == "floor":
            # The smallest window that keeps at least the visible patches a floored masked count leaves.
            return math.isqrt(grid_size**2 - math.floor(self.mask_rate * grid_size**2) - 1) + 1
        return max(1, round(grid_size * math.sqrt(1.0 - self.mask_rate)))

    def num_masked(self, grid_size: int) -> int:
        """The exact number of masked patches in each row of a mask over a `grid_size` x `grid_size` grid."""
        num_patches = grid_size**2
        if self.kind == "crop":
            return num_patches - self._crop_side(grid_size) ** 2
        block_area = 1 if self.kind == "patch" else self.block_size**2
        if self.rounding == "floor":
            # As the official code: the floored patch count, then the whole blocks that fit in it.
            return math.floor(self.mask_rate * num_patches) // block_area * block_area
        return round(self.mask_rate * (num_patches // block_area)) * block_area  # the nearest count of whole blocks

    def achieved_mask_rate(self, grid_size: int) -> float:
        """The share of patches actually masked on a `grid_size` grid (blocks and crops round `mask_rate`)."""
        return self.num_masked(grid_size) / grid_size**2

    def __call__(
        self,
        batch_size: int,
        grid_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.BoolTensor:
        """`batch_size` masks over a `grid_size` x `grid_size` patch grid, `(batch_size, grid_size**2)`, `True` = masked,
        the same count in every row; the same seeded `generator` gives the same masks."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
        self.validate(grid_size)
        # Random numbers are drawn where the generator lives, then moved, so a CPU generator also seeds GPU masks.
        gen_device = generator.device if generator is not None else device
        if self.kind == "patch":
            mask = _random_subset_mask(batch_size, grid_size**2, self.num_masked(grid_size), generator, gen_device)
        elif self.kind == "block":
            blocks_per_side = grid_size // self.block_size
            num_masked_blocks = self.num_masked(grid_size) // self.block_size**2
            block_mask = _random_subset_mask(batch_size, blocks_per_side**2, num_masked_blocks, generator, gen_device)
            # Each block of the block grid covers block_size x block_size patches, as a patch covers its pixels.
            mask = patch_mask_to_pixel_mask(block_mask, self.block_size, blocks_per_side).reshape(batch_size, -1)
        else:
            side = self._crop_side(grid_size)
            corner = torch.randint(0, grid_size - side + 1, (batch_size, 2), generator=generator, device=gen_device)
            coords = torch.arange(grid_size, device=gen_device)
            inside_rows = (coords >= corner[:, :1]) & (coords < corner[:, :1] + side)  # (B, G)
            inside_cols = (coords >= corner[:, 1:]) & (coords < corner[:, 1:] + side)  # (B, G)
            visible = inside_rows[:, :, None] & inside_cols[:, None, :]
            mask = ~visible.reshape(batch_size, grid_size**2)
        return mask.to(device) if device is not None else mask


def _random_subset_mask(batch_size, num_items, num_masked, generator, device) -> torch.BoolTensor:
    """A (batch, num_items) mask with `num_masked` True per row, chosen uniformly (MAE-style argsort of noise)."""
    noise = torch.rand(batch_size, num_items, generator=generator, device=device)
    ranks = noise.argsort(dim=1).argsort(dim=1)
    return ranks < num_masked


def visible_indices(mask: torch.BoolTensor, num_masked: int | None = None) -> torch.LongTensor:
    """
    (batch, num_visible) indices of the visible patches of a (batch, num_patches) mask, in grid order: MAE's
    `ids_keep`, what `MaskedDiTModel` takes to drop the masked tokens.

    Args:
        mask (`torch.BoolTensor`): (batch, num_patches), `True` = masked.
        num_masked (`int`, *optional*): the masked count of every row, when the caller knows it (a `MaskGenerator`'s
            `num_masked`): the mask is trusted and nothing is read back from the device. Without it the count is
            read (one device sync) and checked: a `ValueError` if rows hide different numbers of patches, or every
            patch.
    """
    if num_masked is None:
        counts = mask.sum(dim=1)
        fewest, num_masked = torch.stack(torch.aminmax(counts)).tolist()
        if fewest != num_masked:
            raise ValueError(
                f"every row of `mask` must hide the same number of patches, got counts {sorted(set(counts.tolist()))}:"
                " draw masks with `MaskGenerator`, which keeps the count fixed."
            )
        if num_masked == mask.shape[1]:
            raise ValueError("`mask` hides every patch: at least one patch per image must stay visible.")
    # A stable sort of the 0/1 mask puts visible patches first, each group kept in grid order.
    return mask.to(torch.uint8).argsort(dim=1, stable=True)[:, : mask.shape[1] - num_masked]


def patch_mask_to_pixel_mask(
    mask: torch.BoolTensor, patch_size: int, grid_size: int | None = None
) -> torch.BoolTensor:
    """Expands a (batch, grid**2) patch mask to a (batch, 1, grid*patch_size, grid*patch_size) pixel mask."""
    grid_size = grid_size or math.isqrt(mask.shape[1])
    pixel_mask = mask.view(-1, 1, grid_size, grid_size).repeat_interleave(patch_size, dim=2)
    return pixel_mask.repeat_interleave(patch_size, dim=3)


def draw_masks(images: torch.Tensor, mask: torch.BoolTensor, patch_size: int, fill: float = 0.5) -> torch.Tensor:
    """
    Shows what a model sees: `images` (batch, C, H, W) with the masked patches painted `fill` (grey in [0, 1]).

    Use it to look at a generator's masks, e.g. `draw_masks(images, gen(len(images), H // patch_size), patch_size)`.
    """
    grid_size = images.shape[-1] // patch_size
    if images.ndim != 4 or tuple(mask.shape) != (images.shape[0], grid_size * (images.shape[-2] // patch_size)):
        raise ValueError(
            f"`images` (batch, channels, height, width) and `mask` (batch, num_patches) do not match: got shapes "
            f"{tuple(images.shape)} and {tuple(mask.shape)} with patch_size={patch_size}."
        )
    pixel_mask = patch_mask_to_pixel_mask(mask, patch_size, grid_size).to(images.device)
    return images.masked_fill(pixel_mask, fill)
