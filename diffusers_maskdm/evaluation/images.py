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
"""The one image convention of the evaluation code, and the conversions into it.

Every public function of `diffusers_maskdm.evaluation` takes images as **float tensors in [0, 1], shape
(batch, channels, height, width), with 1 or 3 channels** (grayscale is repeated to RGB), or `torch.uint8` tensors in
[0, 255] as already-quantised images. Images in [-1, 1] (diffusers' training convention) must be mapped with
`(images + 1) / 2` first: the range is checked, so a mix-up raises instead of giving a wrong FID.
"""

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image


# Values a little outside [0, 1] come from resampling overshoot and round-off; they are clamped. Further out is a
# different convention and is refused.
_RANGE_TOLERANCE = 1e-3
# Keys under which a batch dict usually carries its images (ours, diffusers' examples, transformers processors).
_IMAGE_KEYS = ("images", "image", "input", "pixel_values")


def to_uint8_images(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    """Validates a batch of images (see the module docstring) and quantises it to 8 bits, `round(255 * x)`, as
    standard FID expects (like saving a PNG). Returns `torch.uint8` images (batch, 3, height, width).

    Args:
        images (`torch.Tensor`): float images in [0, 1] or `torch.uint8` images, (batch, 1 or 3, height, width).
        name (`str`, *optional*, defaults to `"images"`): the argument name used in error messages.
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(
            f"`{name}` must be a torch.Tensor of shape (batch, channels, height, width), got {type(images).__name__}."
            " Convert PIL images or numpy arrays with `diffusers_maskdm.evaluation.pil_to_tensor`."
        )
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"`{name}` must have shape (batch, channels, height, width) with 1 or 3 channels, got shape"
            f" {tuple(images.shape)}. Channels-last arrays need `.permute(0, 3, 1, 2)`; RGBA images need converting"
            " to RGB."
        )
    if images.shape[0] == 0:
        raise ValueError(f"`{name}` is an empty batch (shape {tuple(images.shape)}).")
    if images.is_floating_point():
        if not torch.isfinite(images).all():
            raise ValueError(f"`{name}` contains NaN or infinite values.")
        low, high = images.min().item(), images.max().item()
        if low < -_RANGE_TOLERANCE:
            raise ValueError(
                f"`{name}` must be in [0, 1], got values down to {low:.3f}. Images in [-1, 1] need"
                " `(images + 1) / 2` first."
            )
        if high > 1 + _RANGE_TOLERANCE:
            raise ValueError(
                f"`{name}` must be in [0, 1], got values up to {high:.3f}. Images in [0, 255] need `images / 255`"
                " first (or pass them as torch.uint8)."
            )
        images = images.clamp(0, 1).mul(255).round().to(torch.uint8)
    elif images.dtype != torch.uint8:
        raise ValueError(
            f"`{name}` must be a float tensor in [0, 1] or a torch.uint8 tensor, got dtype {images.dtype}."
        )
    return images.expand(-1, 3, -1, -1).contiguous()


def pil_to_tensor(images: Image.Image | np.ndarray | list[Image.Image] | list[np.ndarray]) -> torch.Tensor:
    """Converts PIL images (made RGB) or channels-last numpy arrays, (height, width, channels) or (batch, height,
    width, channels), uint8 or float in [0, 1] (diffusers' `output_type="np"`), into float (batch, channels, height,
    width) in [0, 1]."""
    arrays = []
    for image in [images] if isinstance(images, (Image.Image, np.ndarray)) else images:
        array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
        array = array[..., None] if array.ndim == 2 else array  # grayscale: one channel
        array = array[None] if array.ndim == 3 else array  # one image: a batch of one
        array = array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array
        arrays.append(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)))
    return torch.cat(arrays).permute(0, 3, 1, 2).contiguous()


def _images_of(batch: Any, image_key: str | None) -> Any:
    """The images of one batch or item: a tensor as is, the first element of a tuple, a dict's image entry."""
    if isinstance(batch, dict):
        key = image_key or next((key for key in _IMAGE_KEYS if key in batch), None)
        if key not in batch:
            what = f"`image_key={image_key!r}` is not a key of the batch" if image_key else "Cannot find the images"
            raise ValueError(f"{what}; the batch's keys are {list(batch)}: pass `image_key`.")
        return batch[key]
    if isinstance(batch, (tuple, list)) and not isinstance(batch[0], (Image.Image, np.ndarray)):
        return batch[0]  # (images, labels) as a torchvision-style data set or its DataLoader yields them
    return batch


def _as_tensor(images: Any) -> torch.Tensor:
    is_pil = isinstance(images, (Image.Image, np.ndarray))
    if is_pil or (isinstance(images, list) and images and isinstance(images[0], (Image.Image, np.ndarray))):
        return pil_to_tensor(images)
    if isinstance(images, list):
        if not all(isinstance(image, torch.Tensor) for image in images):
            raise ValueError(f"Images must be tensors, PIL images or numpy arrays, got {type(images[0]).__name__}.")
        return torch.stack(images)
    return images


def iterate_image_batches(
    images: torch.Tensor | Iterable[Any], batch_size: int = 64, image_key: str | None = None
) -> Iterator[torch.Tensor]:
    """Yields float (or uint8) image batches (batch, channels, height, width) from common sources.

    Args:
        images (`torch.Tensor`, a `torch.utils.data.Dataset`, a 🤗 `datasets.Dataset`, or an iterable of batches):
            a tensor (N, C, H, W) is cut into batches of `batch_size`; a map-style data set (torch or 🤗) yields
            *items*, batched with a `DataLoader`; anything else iterable (a `DataLoader`, a list, a generator) yields
            *batches*. Items and batches may be tensors, `(images, labels)` tuples or dicts (see `image_key`); PIL
            images and numpy arrays are converted with `pil_to_tensor`.
        batch_size (`int`, *optional*, defaults to 64): batch size for a tensor or a data set of items.
        image_key (`str`, *optional*): the dict key of the images; by default the first of `images`, `image`,
            `input`, `pixel_values`.
    """
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"`images` must have shape (N, channels, height, width), got {tuple(images.shape)}.")
        yield from images.split(batch_size)
        return
    # 🤗 datasets.Dataset is not a torch Dataset but is indexed the same way; checked by module name so that
    # `datasets` stays an import of the caller.
    is_map_dataset = type(images).__module__.startswith("datasets.") or (
        isinstance(images, torch.utils.data.Dataset) and not isinstance(images, torch.utils.data.IterableDataset)
    )
    if is_map_dataset:
        collate = lambda items: _as_tensor([_images_of(item, image_key) for item in items])  # noqa: E731
        yield from torch.utils.data.DataLoader(images, batch_size=batch_size, shuffle=False, collate_fn=collate)
        return
    for batch in images:
        yield _as_tensor(_images_of(batch, image_key))
