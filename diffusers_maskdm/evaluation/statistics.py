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
"""Feature statistics (mean, covariance, count) and the Fréchet distance between two sets of images.

The arithmetic is torchmetrics' `FrechetInceptionDistance`, used with our feature extractors as its `feature`
network: statistics are read from and written into its "real" state, so a reference set is featurised once.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torchmetrics.image.fid import FrechetInceptionDistance
from tqdm.auto import tqdm

from .features import FeatureExtractor
from .images import iterate_image_batches, to_uint8_images


@dataclass
class FeatureStatistics:
    """The Gaussian a Fréchet distance compares: mean and covariance of a set's features.

    Args:
        mean (`torch.Tensor`): float64 (num_features,).
        covariance (`torch.Tensor`): float64 (num_features, num_features), unbiased (divided by `num_samples - 1`).
        num_samples (`int`): how many images the statistics were computed from.
        extractor (`str`): the `identifier` of the feature extractor.
        metadata (`dict[str, str]`, *optional*): anything else worth keeping (data set, resolution, ...).
    """

    mean: torch.Tensor
    covariance: torch.Tensor
    num_samples: int
    extractor: str
    metadata: dict[str, str] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        """Writes the statistics as a safetensors file (no pickle); the strings go into its metadata."""
        metadata = {
            "num_samples": str(self.num_samples),
            "extractor": self.extractor,
            "metadata": json.dumps(self.metadata),
        }
        tensors = {
            "mean": self.mean.double().contiguous().cpu(),
            "covariance": self.covariance.double().contiguous().cpu(),
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> "FeatureStatistics":
        """Reads statistics written by `save`."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        if "extractor" not in metadata or "num_samples" not in metadata:
            raise ValueError(f"{path} is not a feature-statistics file written by `FeatureStatistics.save`.")
        tensors = load_file(str(path))
        return cls(
            mean=tensors["mean"],
            covariance=tensors["covariance"],
            num_samples=int(metadata["num_samples"]),
            extractor=metadata["extractor"],
            metadata=json.loads(metadata.get("metadata", "{}")),
        )

    @classmethod
    def from_metric(cls, metric: FrechetInceptionDistance, real: bool = True, **kwargs: Any) -> "FeatureStatistics":
        """Reads the real (or generated) statistics accumulated by a metric built with `build_frechet_metric`."""
        prefix = "real" if real else "fake"
        n = int(getattr(metric, f"{prefix}_features_num_samples"))
        if n < 2:
            raise ValueError(f"A covariance needs at least 2 images, got {n}: pass more images (`num_samples`).")
        total = getattr(metric, f"{prefix}_features_sum").double()
        mean = total / n
        # Same formula as FrechetInceptionDistance.compute.
        covariance = (getattr(metric, f"{prefix}_features_cov_sum").double() - n * torch.outer(mean, mean)) / (n - 1)
        return cls(
            mean=mean.cpu(),
            covariance=covariance.cpu(),
            num_samples=n,
            extractor=metric.inception.identifier,
            **kwargs,
        )

    def load_into(self, metric: FrechetInceptionDistance) -> None:
        """Sets a metric's real state to these statistics, as if it had seen the images itself."""
        if metric.inception.identifier != self.extractor:
            raise ValueError(
                f"The reference statistics were computed with {self.extractor!r} but the metric uses"
                f" {metric.inception.identifier!r}: recompute them with the same feature extractor."
            )
        n = self.num_samples
        mean = self.mean.double().to(metric.real_features_sum.device)
        covariance = self.covariance.double().to(mean.device)
        metric.real_features_sum = mean * n
        metric.real_features_cov_sum = covariance * (n - 1) + n * torch.outer(mean, mean)
        metric.real_features_num_samples = torch.tensor(n, dtype=torch.long, device=mean.device)


def build_frechet_metric(
    extractor: FeatureExtractor, reference: FeatureStatistics | None = None
) -> FrechetInceptionDistance:
    """A torchmetrics `FrechetInceptionDistance` computing with `extractor`, its real state set to `reference`.

    The real state survives `metric.reset()` (only the generated side is cleared), so a training loop builds the
    metric once and reuses it. `sync_on_compute` is off: the metric is meant to run on one process (the main one).

    Args:
        extractor (`FeatureExtractor`): the feature network (see `load_feature_extractor`).
        reference (`FeatureStatistics`, *optional*): statistics of the real images.
    """
    if not isinstance(extractor, FeatureExtractor):
        raise ValueError(
            f"`extractor` must be a FeatureExtractor, got {type(extractor).__name__}: wrap it with"
            " `load_feature_extractor(...)` or `ModuleFeatures(...)`."
        )
    metric = FrechetInceptionDistance(
        feature=extractor, reset_real_features=False, normalize=False, sync_on_compute=False
    ).to(extractor.device)
    if reference is not None:
        reference.load_into(metric)
    return metric


def update_metric(metric: FrechetInceptionDistance, images: torch.Tensor, real: bool, name: str = "images") -> int:
    """Validates and quantises a batch (float in [0, 1], see `to_uint8_images`), then adds it to the metric.

    Returns:
        `int`: the number of images added.
    """
    uint8 = to_uint8_images(images, name=name).to(metric.real_features_sum.device)
    metric.update(uint8, real=real)
    return uint8.shape[0]


def compute_feature_statistics(
    images: torch.Tensor | Iterable[Any],
    extractor: FeatureExtractor,
    num_samples: int | None = None,
    batch_size: int = 64,
    image_key: str | None = None,
    progress: bool = False,
    expected_resolution: int | None = None,
) -> FeatureStatistics:
    """Features a set of images and returns their statistics.

    Args:
        images (`torch.Tensor`, data set or iterable of batches):
            float images in [0, 1] (batch, channels, height, width); see `iterate_image_batches` for the sources.
        extractor (`FeatureExtractor`): the feature network.
        num_samples (`int`, *optional*): use the first `num_samples` images; all of them when `None`.
        batch_size (`int`, *optional*, defaults to 64): batch size for a tensor or a data set of items.
        image_key (`str`, *optional*): dict key of the images in a batch.
        progress (`bool`, *optional*, defaults to `False`): show a progress bar.
        expected_resolution (`int`, *optional*): refuse images whose height or width differ from it.
    """
    if num_samples is not None and num_samples < 2:
        raise ValueError(f"`num_samples` must be at least 2 for a covariance, got {num_samples}.")
    metric = build_frechet_metric(extractor)
    seen = 0
    with tqdm(total=num_samples, desc=f"features ({extractor.metric_name})", unit="img", disable=not progress) as bar:
        for batch in iterate_image_batches(images, batch_size=batch_size, image_key=image_key):
            if expected_resolution is not None and tuple(batch.shape[-2:]) != (expected_resolution,) * 2:
                raise ValueError(
                    f"`resolution` is {expected_resolution} but the images are {tuple(batch.shape[-2:])}: resize the"
                    " data set to the resolution the statistics are keyed by."
                )
            if num_samples is not None:
                batch = batch[: num_samples - seen]
            added = update_metric(metric, batch, real=True)
            seen += added
            bar.update(added)
            if num_samples is not None and seen >= num_samples:
                break
    if seen < 2:
        raise ValueError(f"A covariance needs at least 2 images, but `images` held {seen}.")
    return FeatureStatistics.from_metric(metric, real=True)
