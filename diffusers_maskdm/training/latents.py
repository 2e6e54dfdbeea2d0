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
import math
import os
from pathlib import Path

import torch
from accelerate import PartialState
from diffusers import AutoencoderKL
from safetensors import safe_open
from tqdm.auto import tqdm

from ..caching import cache_path, read_cache_file, weights_digest, write_cache_file
from ..pipelines.pipeline_masked_ddpm import check_vae, vae_scale_factor
from .data import ImageTransform, SeededItems, TrainImageDataset, to_model_range


logger = logging.getLogger(__name__)

_CACHE_FORMAT = "2"  # bump when the way latents are encoded changes (2: bf16 shards)


def load_vae(name_or_path: str, subfolder: str | None = None, **hub_options) -> AutoencoderKL:
    """The frozen `AutoencoderKL` of `--vae_name_or_path` (a folder or Hub id; `--vae_subfolder`, e.g. `"vae"` in a
    Stable Diffusion repo), safetensors only; a `ValueError` names the flags when it cannot be loaded, or when its
    `scaling_factor` (0 would train on zero latents) or `shift_factor` cannot scale latents."""
    where = f"--vae_name_or_path={name_or_path!r}" + (f" --vae_subfolder={subfolder!r}" if subfolder else "")
    try:
        vae = AutoencoderKL.from_pretrained(name_or_path, subfolder=subfolder, use_safetensors=True, **hub_options)
    except Exception as error:  # Not found, offline, another model class: all mean no VAE to train with.
        raise ValueError(
            f"{where} holds no diffusers AutoencoderKL that could be loaded ({type(error).__name__}: "
            f"{' '.join(str(error).split())}). Fix: "
            "pass a folder or Hub id of one (e.g. stabilityai/sd-vae-ft-mse), with --vae_subfolder vae for a Stable "
            "Diffusion repo."
        ) from None
    check_vae(vae, where)
    return vae.requires_grad_(False).eval()


class LatentDataset(SeededItems):
    r"""
    The images of a [`TrainImageDataset`] as latents of a frozen `vae`, encoded once (the centre crop, and its mirror
    image with `random_flip`) into a cache keyed by the data (`data_id`), its preparation and the VAE's weights: a
    folder of safetensors shards of `shard_size` images, bf16. Every process encodes its share of the missing shards
    (shard `k` by process `k` modulo the process count, under `accelerate`), then all read them lazily, an item at a
    time from the memory-mapped file, so no process holds the cache. An item, asked for as the images are (by
    `(epoch, position)` or position), is `{"latents": ...}` (plus `"class_labels"`): a draw from the VAE's latent
    distribution, mirrored with probability 1/2 under `random_flip`, both from `(seed, epoch, position)`, then
    `(z - shift_factor) * scaling_factor` as diffusers scales latents.

    Args:
        images ([`TrainImageDataset`]): the training images (their rows, resolution, channels, labels, seed).
        vae (`AutoencoderKL`): the frozen VAE (on the device to encode on; bf16 autocast on a GPU).
        data_id (`str`): identifies the data (`caching.data_source_id` and the split, column and subset).
        random_flip (`bool`, *optional*, defaults to `False`): serve mirrored latents half of the time.
        cache_dir (`str` or `os.PathLike`, *optional*): `--latents_cache_dir` (default: see `caching.cache_path`).
        batch_size (`int`, *optional*, defaults to 16): images per encoder call.
        shard_size (`int`, *optional*, defaults to 1024): images per cache file.
    """

    def __init__(
        self,
        images: TrainImageDataset,
        vae: AutoencoderKL,
        data_id: str,
        random_flip: bool = False,
        cache_dir: str | os.PathLike | None = None,
        batch_size: int = 16,
        shard_size: int = 1024,
    ):
        transform, device = images.transform, vae.device
        preparation = (
            f"center-crop|{transform.interpolation}|channels={transform.num_channels}|flips={1 + random_flip}"
        )
        preparation += f"|autocast={device.type == 'cuda'}|shard_size={shard_size}"
        key = {"data": data_id, "rows": str(len(images)), "resolution": str(transform.resolution)}
        settings = {name: value for name, value in vae.config.items() if not name.startswith("_")}  # not its name
        key |= {"preparation": preparation, "vae": weights_digest(vae)[:24], "vae_config": json.dumps(settings)}
        key |= {"format": _CACHE_FORMAT}
        self.folder = cache_path("latents", key, cache_dir).with_suffix("")
        self.shard_size, self.num_rows, self._files, self._resident = shard_size, len(images), {}, {}
        state, shards = PartialState(), range(math.ceil(len(images) / shard_size))

        def encode(shard: int) -> dict:
            return self._encode(images, vae, random_flip, batch_size, shard * shard_size, shard_size)

        for shard in shards[state.process_index :: state.num_processes]:  # this process's share
            if read_cache_file(self._path(shard), shard_key := {**key, "shard": str(shard)}) is None:
                moments = encode(shard)
                if not write_cache_file(moments, self._path(shard), shard_key):
                    self._resident[shard] = moments  # kept in memory by this process
        state.wait_for_everyone()
        for shard in shards:  # what another process could not write (a full disk): encoded here too, and kept
            if shard not in self._resident and not self._path(shard).is_file():
                self._resident[shard] = encode(shard)
        logger.info("Latents of %s: %d shards in %s", images.description, len(shards), self.folder)
        config = vae.config
        self.scaling_factor, self.shift_factor = config.scaling_factor, config.get("shift_factor") or 0.0
        self.num_channels, self.resolution = config.latent_channels, transform.resolution // vae_scale_factor(vae)
        self.random_flip, self.seed, self.epoch, self.num_skipped = random_flip, images.seed, 0, images.num_skipped
        self.num_classes, self.class_names = images.num_classes, images.class_names
        self.description = images.description
        self.labels = None if images.label_column is None else images.hf_dataset[images.label_column]

    def _path(self, shard: int) -> Path:
        return self.folder / f"shard-{shard:05d}.safetensors"

    @staticmethod
    @torch.no_grad()
    def _encode(images, vae: AutoencoderKL, random_flip: bool, batch_size: int, first: int, count: int) -> dict:
        """The latent distributions' mean and standard deviation of images `first` to `first + count`,
        (images, flips, C, h, w) bf16 on the CPU."""
        transform = ImageTransform(images.resolution, images.num_channels, True, False, images.transform.interpolation)
        column, device, means, stds = images.image_column, vae.device, [], []
        last = min(first + count, len(images))
        for start in tqdm(range(first, last, batch_size), desc=f"Encoding latents {first}-{last}", unit="batch"):
            rows = images.hf_dataset[start : min(start + batch_size, last)][column]
            pixels = to_model_range(torch.stack([transform(image) for image in rows]).to(device))
            views = [pixels, pixels.flip(-1)] if random_flip else [pixels]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                encoded = [vae.encode(view.to(vae.dtype)).latent_dist for view in views]
            means.append(torch.stack([d.mean.to(torch.bfloat16).cpu() for d in encoded], dim=1))
            stds.append(torch.stack([d.std.to(torch.bfloat16).cpu() for d in encoded], dim=1))
        return {"mean": torch.cat(means).contiguous(), "std": torch.cat(stds).contiguous()}

    def moments(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The (flips, C, h, w) float32 mean and standard deviation of image `position`, read from its shard."""
        shard, row = divmod(position, self.shard_size)
        if shard in self._resident:
            return tuple(self._resident[shard][name][row].float() for name in ("mean", "std"))
        if shard not in self._files:  # opened in each DataLoader worker, on first use
            self._files[shard] = safe_open(str(self._path(shard)), framework="pt")
        file = self._files[shard]
        return tuple(file.get_slice(name)[row : row + 1][0].float() for name in ("mean", "std"))

    def __getstate__(self) -> dict:  # open files stay with their process; a worker opens its own
        return {**self.__dict__, "_files": {}}

    def __len__(self) -> int:
        return self.num_rows

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        position, generator = self.item_generator(item)
        flip = int(self.random_flip and float(torch.rand((), generator=generator)) < 0.5)
        mean, std = (moment[flip] for moment in self.moments(position))
        latents = mean + std * torch.randn(mean.shape, generator=generator)
        example = {"latents": (latents - self.shift_factor) * self.scaling_factor}
        if self.labels is not None:
            example["class_labels"] = torch.tensor(self.labels[position], dtype=torch.long)
        return example
