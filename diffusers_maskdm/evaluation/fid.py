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
"""FID (and any Fréchet distance) of image sets and of a pipeline's samples against reference statistics."""

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .features import FeatureExtractor
from .images import iterate_image_batches, pil_to_tensor
from .statistics import FeatureStatistics, build_frechet_metric, update_metric


@dataclass
class FrechetScore:
    """One Fréchet distance and what it was measured with.

    Args:
        metric (`str`): `"fid"`, `"fd_dinov2"` or `"fd"` (the extractor's `metric_name`).
        value (`float`): the distance.
        extractor (`str`): the feature extractor's identifier.
        num_samples (`int`): generated (or compared) images.
        num_reference_samples (`int`): images behind the reference statistics.
        reference (`dict[str, str]`): the reference statistics' metadata (data set, resolution, cache path, ...).
    """

    metric: str
    value: float
    extractor: str
    num_samples: int
    num_reference_samples: int
    reference: dict[str, str] = field(default_factory=dict)


@dataclass
class EvaluationResult:
    """What `generate_and_score` measured.

    Args:
        scores (`list[FrechetScore]`): one per feature extractor.
        num_samples (`int`): images generated.
        seed (`int`): seed of the generator.
        num_inference_steps (`int`, *optional*): denoising steps (`None`: the pipeline's default).
        sample_images (`torch.Tensor`, *optional*): the first generated images, float in [0, 1], for a grid.
    """

    scores: list[FrechetScore]
    num_samples: int
    seed: int
    num_inference_steps: int | None
    sample_images: torch.Tensor | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (without the images)."""
        return {
            "scores": [asdict(score) for score in self.scores],
            "num_samples": self.num_samples,
            "seed": self.seed,
            "num_inference_steps": self.num_inference_steps,
        }

    def __getitem__(self, metric: str) -> float:
        """The value of the first score named `metric`, e.g. `result["fid"]`."""
        for score in self.scores:
            if score.metric == metric:
                return score.value
        raise KeyError(f"No {metric!r} score; measured: {[score.metric for score in self.scores]}.")


def compute_frechet_distance(
    real_images: torch.Tensor | Iterable[Any],
    generated_images: torch.Tensor | Iterable[Any],
    extractor: FeatureExtractor,
    batch_size: int = 64,
) -> float:
    """The Fréchet distance between two image sets in `extractor`'s feature space (FID with an Inception).

    Args:
        real_images, generated_images (`torch.Tensor`, data set or iterable of batches):
            float images in [0, 1], (batch, channels, height, width); see `iterate_image_batches`.
        extractor (`FeatureExtractor`): the feature network.
        batch_size (`int`, *optional*, defaults to 64): batch size for tensors and data sets of items.
    """
    metric = build_frechet_metric(extractor)
    counts = {}
    for name, images, real in (("real_images", real_images, True), ("generated_images", generated_images, False)):
        counts[name] = 0
        for batch in iterate_image_batches(images, batch_size=batch_size):
            counts[name] += update_metric(metric, batch, real=real, name=name)
        if counts[name] < 2:
            raise ValueError(f"`{name}` must hold at least 2 images for a covariance, got {counts[name]}.")
    return float(metric.compute())


def _output_to_tensor(images: Any) -> torch.Tensor:
    """A pipeline's `.images` as float (batch, channels, height, width): `output_type="pt"` gives that already;
    numpy (batch, height, width, channels) and PIL lists are converted."""
    if isinstance(images, torch.Tensor):
        return images.float()
    if isinstance(images, (list, np.ndarray)):
        return pil_to_tensor(list(images) if isinstance(images, list) else images)
    raise ValueError(f"The pipeline returned images of type {type(images).__name__}; expected a tensor.")


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
    `batch_size` only. The pipeline's own per-step progress bar is silenced meanwhile and restored afterwards.

    Args:
        pipeline: a diffusers pipeline called as `pipeline(batch_size=..., generator=..., num_inference_steps=...,
            output_type="pt")` returning `.images` (e.g. `MaskedDDPMPipeline`, `DDPMPipeline`).
        num_samples (`int`): how many images.
        batch_size (`int`, *optional*, defaults to 64): images per pipeline call.
        num_inference_steps (`int`, *optional*): denoising steps; the pipeline's default when `None`.
        seed (`int`, *optional*, defaults to 0): seed of the CPU generator.
        progress (`bool`, *optional*, defaults to `True`): show a progress bar over images.
        pipeline_kwargs: passed to every pipeline call (e.g. `class_labels`).
    """
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive int, got {num_samples!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}.")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    if num_inference_steps is not None:
        pipeline_kwargs["num_inference_steps"] = num_inference_steps
    saved_config = dict(getattr(pipeline, "_progress_bar_config", {}))
    if hasattr(pipeline, "set_progress_bar_config"):
        pipeline.set_progress_bar_config(**{**saved_config, "disable": True})
    try:
        with tqdm(total=num_samples, desc="sampling", unit="img", disable=not progress) as bar:
            for start in range(0, num_samples, batch_size):
                n = min(batch_size, num_samples - start)
                output = pipeline(batch_size=n, generator=generator, output_type="pt", **pipeline_kwargs)
                bar.update(n)
                yield _output_to_tensor(output.images)
    finally:
        if hasattr(pipeline, "_progress_bar_config"):
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
        references (`FeatureStatistics` or a list of them): reference statistics, one per extractor and computed
            with it (see `load_or_compute_reference_statistics`).
        num_samples (`int`): images to generate (the N of FID-N); at least 2.
        batch_size (`int`, *optional*, defaults to 64): images per pipeline call.
        num_inference_steps (`int`, *optional*): denoising steps; the pipeline's default when `None`.
        seed (`int`, *optional*, defaults to 0): seed of the sampling generator.
        num_grid_images (`int`, *optional*, defaults to 0): keep the first images in `sample_images`.
        progress (`bool`, *optional*, defaults to `True`): show progress bars.
        pipeline_kwargs: passed to every pipeline call.
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
        pipeline, num_samples, batch_size, num_inference_steps, seed=seed, progress=progress, **pipeline_kwargs
    )
    for batch in batches:
        _check_resolution(batch, references)
        for metric in metrics:
            update_metric(metric, batch, real=False, name="pipeline images")
        if sum(len(images) for images in kept) < num_grid_images:
            kept.append(batch.cpu())
    scores = [
        FrechetScore(
            metric=extractor.metric_name,
            value=float(metric.compute()),
            extractor=extractor.identifier,
            num_samples=num_samples,
            num_reference_samples=reference.num_samples,
            reference=dict(reference.metadata),
        )
        for extractor, reference, metric in zip(extractors, references, metrics)
    ]
    sample_images = torch.cat(kept)[:num_grid_images] if kept else None
    return EvaluationResult(scores, num_samples, seed, num_inference_steps, sample_images)


def _check_resolution(batch: torch.Tensor, references: list[FeatureStatistics]) -> None:
    for reference in references:
        resolution = reference.metadata.get("resolution")
        if resolution is not None and tuple(batch.shape[-2:]) != (int(resolution),) * 2:
            raise ValueError(
                f"The pipeline generates {tuple(batch.shape[-2:])} images but the reference statistics are at"
                f" resolution {resolution}: build the reference at the pipeline's `sample_size`."
            )


def compute_fid_for_pipeline(
    pipeline: Any,
    reference: FeatureStatistics,
    extractor: FeatureExtractor,
    num_samples: int,
    batch_size: int = 64,
    num_inference_steps: int | None = None,
    seed: int = 0,
    progress: bool = False,
    **pipeline_kwargs: Any,
) -> float:
    """FID-N of a pipeline for a training loop: sample `num_samples` images and return the distance as a float.

    Call it on the main process only (the metric does not synchronise across processes). The same `seed` every
    time makes successive values comparable. Arguments as in `generate_and_score`.
    """
    result = generate_and_score(
        pipeline,
        extractor,
        reference,
        num_samples,
        batch_size=batch_size,
        num_inference_steps=num_inference_steps,
        seed=seed,
        progress=progress,
        **pipeline_kwargs,
    )
    return result.scores[0].value
