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
"""Training in the latent space of a diffusers `AutoencoderKL` (`--vae_name_or_path`): the frozen VAE, and the
training images encoded by it once and cached, so that training never runs the encoder (docs/training.md)."""

import json
import logging
import os

import torch
from diffusers import AutoencoderKL
from tqdm.auto import tqdm

from ..caching import cache_path, read_cache_file, weights_digest, write_cache_file
from ..pipelines.pipeline_masked_ddpm import check_vae
from .data import ImageTransform, SeededItems, TrainImageDataset, to_model_range


logger = logging.getLogger(__name__)

_CACHE_FORMAT = "1"  # bump when the way latents are encoded changes


def load_vae(name_or_path: str, subfolder: str | None = None, **hub_options) -> AutoencoderKL:
    """The frozen `AutoencoderKL` of `--vae_name_or_path` (a folder or Hub id; `--vae_subfolder`, e.g. `"vae"` in a
    Stable Diffusion repo), safetensors only; a `ValueError` names the flags when it cannot be loaded, or when its
    `scaling_factor` (0 would train on zero latents) or `shift_factor` cannot scale latents."""
    where = f"--vae_name_or_path={name_or_path!r}" + (f" --vae_subfolder={subfolder!r}" if subfolder else "")
    try:
        vae = AutoencoderKL.from_pretrained(name_or_path, subfolder=subfolder, use_safetensors=True, **hub_options)
    except Exception as error:  # Not found, offline, another model class: all mean no VAE to train with.
        raise ValueError(
            f"{where} holds no diffusers AutoencoderKL that could be loaded ({type(error).__name__}: {error}). Fix: "
            "pass a folder or Hub id of one (e.g. stabilityai/sd-vae-ft-mse), with --vae_subfolder vae for a Stable "
            "Diffusion repo."
        ) from None
    check_vae(vae, where)
    return vae.requires_grad_(False).eval()


class LatentDataset(SeededItems):
    r"""
    The images of a [`TrainImageDataset`] as latents of a frozen `vae`, encoded once (the centre crop, and its mirror
    image with `random_flip`) and cached as a safetensors file keyed by the data (`data_id`), its preparation and the
    VAE's weights. An item, asked for as the images are (by `(epoch, position)` or position), is `{"latents": ...}`
    (plus `"class_labels"`): a draw from the VAE's latent distribution, mirrored with probability 1/2 under
    `random_flip`, both from `(seed, epoch, position)`, then `(z - shift_factor) * scaling_factor` as diffusers scales
    latents.

    Args:
        images ([`TrainImageDataset`]): the training images (their rows, resolution, channels, labels, seed).
        vae (`AutoencoderKL`): the frozen VAE (on the device to encode on).
        data_id (`str`): identifies the data (`caching.data_source_id` and the split, column and subset).
        random_flip (`bool`, *optional*, defaults to `False`): serve mirrored latents half of the time.
        cache_dir (`str` or `os.PathLike`, *optional*): `--latents_cache_dir` (default: see `caching.cache_path`).
        batch_size (`int`, *optional*, defaults to 16): images per encoder call.
    """

    def __init__(
        self,
        images: TrainImageDataset,
        vae: AutoencoderKL,
        data_id: str,
        random_flip: bool = False,
        cache_dir: str | os.PathLike | None = None,
        batch_size: int = 16,
    ):
        transform = images.transform
        preparation = (
            f"center-crop|{transform.interpolation}|channels={transform.num_channels}|flips={1 + random_flip}"
        )
        key = {"data": data_id, "rows": str(len(images)), "resolution": str(transform.resolution)}
        settings = {name: value for name, value in vae.config.items() if not name.startswith("_")}  # not its name
        key |= {"preparation": preparation, "vae": weights_digest(vae)[:24], "vae_config": json.dumps(settings)}
        key |= {"format": _CACHE_FORMAT}
        path = cache_path("latents", key, cache_dir)
        cached = read_cache_file(path, key)
        moments = cached and {name: cached[0][name] for name in ("mean", "std")}
        if moments:
            logger.info("Latents of %s from the cache: %s", images.description, path)
        else:
            moments = self._encode(images, vae, random_flip, batch_size)
            if write_cache_file(moments, path, key):
                logger.info("Latents of %d images (%d flips) cached at %s", len(images), 1 + random_flip, path)
        self.mean, self.std, self.random_flip = moments["mean"], moments["std"], random_flip
        config = vae.config
        self.scaling_factor, self.shift_factor = config.scaling_factor, config.get("shift_factor") or 0.0
        self.num_channels, self.resolution = config.latent_channels, self.mean.shape[-1]
        self.seed, self.epoch, self.num_skipped = images.seed, 0, images.num_skipped
        self.num_classes, self.class_names = images.num_classes, images.class_names
        self.description = images.description
        self.labels = None if images.label_column is None else images.hf_dataset[images.label_column]

    @staticmethod
    @torch.no_grad()
    def _encode(images: TrainImageDataset, vae: AutoencoderKL, random_flip: bool, batch_size: int) -> dict:
        """The latent distributions' mean and standard deviation, (images, flips, C, h, w) float32 on the CPU."""
        transform = ImageTransform(images.resolution, images.num_channels, True, False, images.transform.interpolation)
        column, device = images.image_column, vae.device
        means, stds = [], []
        for start in tqdm(range(0, len(images), batch_size), desc="Encoding latents", unit="batch"):
            rows = images.hf_dataset[start : start + batch_size][column]
            pixels = torch.stack([transform(image) for image in rows])
            views = [pixels, pixels.flip(-1)] if random_flip else [pixels]
            encoded = [vae.encode(to_model_range(view.to(device)).to(vae.dtype)).latent_dist for view in views]
            means.append(torch.stack([d.mean.float().cpu() for d in encoded], dim=1))
            stds.append(torch.stack([d.std.float().cpu() for d in encoded], dim=1))
        return {"mean": torch.cat(means).contiguous(), "std": torch.cat(stds).contiguous()}

    def __len__(self) -> int:
        return len(self.mean)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        position, generator = self.item_generator(item)
        flip = int(self.random_flip and float(torch.rand((), generator=generator)) < 0.5)
        mean, std = self.mean[position, flip], self.std[position, flip]
        latents = mean + std * torch.randn(mean.shape, generator=generator)
        example = {"latents": (latents - self.shift_factor) * self.scaling_factor}
        if self.labels is not None:
            example["class_labels"] = torch.tensor(self.labels[position], dtype=torch.long)
        return example
