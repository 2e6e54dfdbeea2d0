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
"""Fréchet distances (FID with an Inception, FD-DINOv2, ...) of image sets and of a pipeline's samples.

The arithmetic is torchmetrics' `FrechetInceptionDistance` with one of our feature extractors as its `feature`
network. A reference set is featurised once: its `FeatureStatistics` (mean, covariance, count) are saved as
safetensors and put back into a metric's "real" state through torchmetrics' own `load_state_dict`.
"""

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torchmetrics.image.fid import FrechetInceptionDistance
from tqdm.auto import tqdm

from .features import FeatureExtractor
from .images import iterate_image_batches, pil_to_tensor, to_uint8_images


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
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        if "extractor" not in metadata or "num_samples" not in metadata:
            raise ValueError(f"{path} is not a feature-statistics file written by `FeatureStatistics.save`.")
        tensors = load_file(str(path))
        return cls(
            tensors["mean"],
            tensors["covariance"],
            int(metadata["num_samples"]),
            metadata["extractor"],
            json.loads(metadata.get("metadata", "{}")),
        )

    @classmethod
    def from_metric(cls, metric: FrechetInceptionDistance, real: bool = True, **kwargs: Any) -> "FeatureStatistics":
        """The real (or generated) statistics a metric built with `build_frechet_metric` has accumulated."""
        state = {
            key.split("_", 1)[1]: value
            for key, value in metric.metric_state.items()
            if key.startswith("real" if real else "fake")
        }
        n = int(state["features_num_samples"])
        if n < 2:
            raise ValueError(f"A covariance needs at least 2 images, got {n}: pass more images (`num_samples`).")
        mean = state["features_sum"].double() / n
        # The formula of FrechetInceptionDistance.compute.
        covariance = (state["features_cov_sum"].double() - n * torch.outer(mean, mean)) / (n - 1)
        return cls(mean.cpu(), covariance.cpu(), n, metric.inception.identifier, **kwargs)

    def load_into(self, metric: FrechetInceptionDistance) -> None:
        """Sets a metric's real state to these statistics, as if it had seen the images itself."""
        if metric.inception.identifier != self.extractor:
            raise ValueError(
                f"The reference statistics were computed with {self.extractor!r} but the metric uses"
                f" {metric.inception.identifier!r}: recompute them with the same feature extractor."
            )
        n, mean, covariance = self.num_samples, self.mean.double(), self.covariance.double()
        state = {
            "real_features_sum": mean * n,
            "real_features_cov_sum": covariance * (n - 1) + n * torch.outer(mean, mean),
            "real_features_num_samples": torch.tensor(n, dtype=torch.long),
        }
        device = metric.real_features_sum.device
        metric.load_state_dict({key: value.to(device) for key, value in state.items()}, strict=False)


def build_frechet_metric(
    extractor: FeatureExtractor, reference: FeatureStatistics | None = None
) -> FrechetInceptionDistance:
    """A torchmetrics `FrechetInceptionDistance` computing with `extractor`, its real state set to `reference`.

    The real state survives `metric.reset()` (only the generated side is cleared), so a training loop builds the
    metric once and reuses it. `sync_on_compute` is off: the metric runs on one process (the main one).
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
    """Validates and quantises a batch (`to_uint8_images`), adds it to the metric and returns how many images."""
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
        images (`torch.Tensor`, data set or iterable of batches): float images in [0, 1] (batch, channels, height,
            width); see `iterate_image_batches` for the sources.
        extractor (`FeatureExtractor`): the feature network.
        num_samples (`int`, *optional*): use the first `num_samples` images; all of them when `None`.
        batch_size (`int`, *optional*, defaults to 64): batch size for a tensor or a data set of items.
        image_key (`str`, *optional*): dict key of the images in a batch.
        progress (`bool`, *optional*, defaults to `False`): show a progress bar (over images; its total is
            `num_samples`, else the length of `images` when it has one).
        expected_resolution (`int`, *optional*): refuse images whose height or width differ from it.
    """
    if num_samples is not None and num_samples < 2:
        raise ValueError(f"`num_samples` must be at least 2 for a covariance, got {num_samples}.")
    metric = build_frechet_metric(extractor)
    seen = 0
    # A tensor or a data set of items knows its image count (a DataLoader knows batches, a generator nothing).
    total = num_samples or (len(images) if isinstance(images, (torch.Tensor, torch.utils.data.Dataset)) else None)
    with tqdm(
        total=total, desc=f"reference features ({extractor.metric_name})", unit="img", disable=not progress
    ) as bar:
        for batch in iterate_image_batches(images, batch_size=batch_size, image_key=image_key):
            if expected_resolution is not None and tuple(batch.shape[-2:]) != (expected_resolution,) * 2:
                raise ValueError(
                    f"`resolution` is {expected_resolution} but the images are {tuple(batch.shape[-2:])}: resize the"
                    " data set to the resolution the statistics are keyed by."
                )
            added = update_metric(metric, batch if num_samples is None else batch[: num_samples - seen], real=True)
            seen += added
            bar.update(added)
            if num_samples is not None and seen >= num_samples:
                break
    if seen < 2:
        raise ValueError(f"A covariance needs at least 2 images, but `images` held {seen}.")
    return FeatureStatistics.from_metric(metric, real=True)


def compute_frechet_distance(
    real_images: torch.Tensor | Iterable[Any],
    generated_images: torch.Tensor | Iterable[Any],
    extractor: FeatureExtractor,
    batch_size: int = 64,
) -> float:
    """The Fréchet distance between two image sets (float in [0, 1], see `iterate_image_batches`) in `extractor`'s
    feature space: FID with an Inception."""
    metric = build_frechet_metric(extractor)
    for name, images, real in (("real_images", real_images, True), ("generated_images", generated_images, False)):
        count = sum(update_metric(metric, batch, real, name) for batch in iterate_image_batches(images, batch_size))
        if count < 2:
            raise ValueError(f"`{name}` must hold at least 2 images for a covariance, got {count}.")
    return float(metric.compute())


@dataclass
class FrechetScore:
    """One Fréchet distance and what it was measured with: `metric` (`"fid"`, `"fd_dinov2"` or `"fd"`), `value`,
    `extractor` (its identifier), `num_samples` (generated images), `num_reference_samples` and `reference` (the
    reference statistics' metadata: data set, resolution, cache path, ...)."""

    metric: str
    value: float
    extractor: str
    num_samples: int
    num_reference_samples: int
    reference: dict[str, str] = field(default_factory=dict)


@dataclass
class EvaluationResult:
    """What `generate_and_score` measured: `scores` (one `FrechetScore` per extractor), `num_samples`, `seed`,
    `num_inference_steps` (`None`: the pipeline's default) and `sample_images` (the first generated images, float
    in [0, 1], for a grid). `result["fid"]` is the value of the first score of that name."""

    scores: list[FrechetScore]
    num_samples: int
    seed: int
    num_inference_steps: int | None
    sample_images: torch.Tensor | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (without the images)."""
        return {key: value for key, value in asdict(self).items() if key != "sample_images"}

    def __getitem__(self, metric: str) -> float:
        for score in self.scores:
            if score.metric == metric:
                return score.value
        raise KeyError(f"No {metric!r} score; measured: {[score.metric for score in self.scores]}.")


def generate_images(
    pipeline: Any,
    num_samples: int,
    batch_size: int = 64,
    num_inference_steps: int | None = None,
    seed: int = 0,
    progress: bool = True,
    **pipeline_kwargs: Any,
) -> Iterator[torch.Tensor]:
    """Yields batches of a pipeline's samples, float in [0, 1], (batch, channels, height, width).

    One `torch.Generator` seeded with `seed` draws all batches in turn, so the samples depend on `seed` and
    `batch_size` only. One progress bar counts images; the pipeline's own per-step bar is silenced meanwhile.

    Args:
        pipeline: a diffusers pipeline called as `pipeline(batch_size=..., generator=..., num_inference_steps=...,
            output_type="pt")` returning `.images` (e.g. `MaskedDDPMPipeline`, `DDPMPipeline`).
        num_samples (`int`): how many images.
        batch_size (`int`, *optional*, defaults to 64): images per pipeline call.
        num_inference_steps (`int`, *optional*): denoising steps; the pipeline's default when `None`.
        seed (`int`, *optional*, defaults to 0): seed of the CPU generator.
        progress (`bool`, *optional*, defaults to `True`): show the progress bar.
        pipeline_kwargs: passed to every pipeline call (e.g. `class_labels`).
    """
    for name, value in (("num_samples", num_samples), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    if num_inference_steps is not None:
        pipeline_kwargs["num_inference_steps"] = num_inference_steps
    saved_config = dict(getattr(pipeline, "_progress_bar_config", {}))
    pipeline.set_progress_bar_config(**{**saved_config, "disable": True})
    try:
        with tqdm(total=num_samples, desc="sampling for FID", unit="img", disable=not progress) as bar:
            for start in range(0, num_samples, batch_size):
                n = min(batch_size, num_samples - start)
                images = pipeline(batch_size=n, generator=generator, output_type="pt", **pipeline_kwargs).images
                bar.update(n)
                # `output_type="pt"` gives float (batch, channels, height, width); some pipelines return numpy/PIL.
                yield images.float() if isinstance(images, torch.Tensor) else pil_to_tensor(list(images))
    finally:
        pipeline._progress_bar_config = saved_config


def generate_and_score(
    pipeline: Any,
    extractors: FeatureExtractor | list[FeatureExtractor],
    references: FeatureStatistics | list[FeatureStatistics],
    num_samples: int,
    batch_size: int = 64,
    num_inference_steps: int | None = None,
    seed: int = 0,
    num_grid_images: int = 0,
    progress: bool = True,
    **pipeline_kwargs: Any,
) -> EvaluationResult:
    """Samples `num_samples` images from a pipeline once and scores them against reference statistics with each
    feature extractor (FID-N with an Inception, FD-DINOv2 with DINOv2, ...).

    Args:
        pipeline: see `generate_images`.
        extractors (`FeatureExtractor` or a list of them): the feature networks.
        references (`FeatureStatistics` or a list of them): reference statistics, one per extractor and computed with
            it (see `load_or_compute_reference_statistics`).
        num_samples (`int`): images to generate (the N of FID-N); at least 2.
        batch_size, num_inference_steps, seed, progress, pipeline_kwargs: as for `generate_images`.
        num_grid_images (`int`, *optional*, defaults to 0): keep the first images in `sample_images`.
    """
    extractors = [extractors] if isinstance(extractors, FeatureExtractor) else list(extractors)
    references = [references] if isinstance(references, FeatureStatistics) else list(references)
    if len(extractors) != len(references) or not extractors:
        raise ValueError(
            f"`extractors` and `references` must pair up one to one, got {len(extractors)} and {len(references)}."
        )
    if not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"`num_samples` must be at least 2 for a covariance, got {num_samples!r}.")
    metrics = [build_frechet_metric(extractor, reference) for extractor, reference in zip(extractors, references)]
    kept = []
    batches = generate_images(
        pipeline, num_samples, batch_size, num_inference_steps, seed, progress, **pipeline_kwargs
    )
    for batch in batches:
        for reference in references:
            resolution = reference.metadata.get("resolution")
            if resolution is not None and tuple(batch.shape[-2:]) != (int(resolution),) * 2:
                raise ValueError(
                    f"The pipeline generates {tuple(batch.shape[-2:])} images but the reference statistics are at"
                    f" resolution {resolution}: build the reference at the pipeline's `sample_size`."
                )
        for metric in metrics:
            update_metric(metric, batch, real=False, name="pipeline images")
        if sum(len(images) for images in kept) < num_grid_images:
            kept.append(batch.cpu())
    scores = [
        FrechetScore(e.metric_name, float(m.compute()), e.identifier, num_samples, r.num_samples, dict(r.metadata))
        for e, r, m in zip(extractors, references, metrics)
    ]
    sample_images = torch.cat(kept)[:num_grid_images] if kept else None
    return EvaluationResult(scores, num_samples, seed, num_inference_steps, sample_images)


def compute_fid_for_pipeline(
    pipeline: Any,
    reference: FeatureStatistics,
    extractor: FeatureExtractor,
    num_samples: int,
    batch_size: int = 64,
    num_inference_steps: int | None = None,
    seed: int = 0,
    progress: bool = True,
    **pipeline_kwargs: Any,
) -> float:
    """FID-N of a pipeline for a training loop: `generate_and_score` with one extractor, the distance as a float.

    Call it on the main process only (the metric does not synchronise across processes). The same `seed` every time
    makes successive values comparable.
    """
    options = dict(batch_size=batch_size, num_inference_steps=num_inference_steps, seed=seed, progress=progress)
    return (
        generate_and_score(pipeline, extractor, reference, num_samples, **options, **pipeline_kwargs).scores[0].value
    )
