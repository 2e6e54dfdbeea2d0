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

The arithmetic and its state are torchmetrics' `FrechetInceptionDistance`, given a `ModuleFeatures` as its `feature`
network. Images are float tensors in [0, 1] (batch, channels, height, width) with 1 or 3 channels, or `torch.uint8`;
images in [-1, 1] (diffusers' training convention) are refused, so a mix-up raises instead of giving a wrong FID.
"""

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torchmetrics.image.fid import FrechetInceptionDistance
from tqdm.auto import tqdm

from .features import ModuleFeatures


# The real-image state of FrechetInceptionDistance: what reference statistics are.
_REAL_STATE = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")
# Values a little outside [0, 1] come from resampling overshoot and round-off: clamped. Further out is refused.
_RANGE_TOLERANCE = 1e-3
_IMAGE_KEYS = ("images", "image", "input", "pixel_values")


def to_uint8_images(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    """Validates a batch of images (float in [0, 1] or `torch.uint8`, (batch, 1 or 3, height, width)) and quantises
    it to 8 bits, `round(255 * x)`, as saving a PNG does. Returns `torch.uint8` RGB images (batch, 3, height, width).

    Args:
        images (`torch.Tensor`): the images.
        name (`str`, *optional*, defaults to `"images"`): the argument name used in error messages.
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor (batch, channels, height, width), got {type(images)}.")
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError(
            f"`{name}` must have shape (batch, channels, height, width) with 1 or 3 channels, got shape"
            f" {tuple(images.shape)}. Channels-last arrays need `.permute(0, 3, 1, 2)`; RGBA images need RGB."
        )
    if images.is_floating_point():
        if not torch.isfinite(images).all():
            raise ValueError(f"`{name}` contains NaN or infinite values.")
        low, high = images.min().item(), images.max().item()
        if low < -_RANGE_TOLERANCE:
            raise ValueError(
                f"`{name}` must be in [0, 1], got values down to {low:.3f}. Images in [-1, 1] need `(images + 1) / 2`."
            )
        if high > 1 + _RANGE_TOLERANCE:
            raise ValueError(
                f"`{name}` must be in [0, 1], got values up to {high:.3f}. Images in [0, 255] need `images / 255`"
                " (or pass them as torch.uint8)."
            )
        images = images.clamp(0, 1).mul(255).round().to(torch.uint8)
    elif images.dtype != torch.uint8:
        raise ValueError(
            f"`{name}` must be a float tensor in [0, 1] or a torch.uint8 tensor, got dtype {images.dtype}."
        )
    return images.expand(-1, 3, -1, -1).contiguous()


def _is_dataset(images: Any) -> bool:
    """A map-style data set of items: torch's, or 🤗 datasets' (recognised by module name: `datasets` is optional)."""
    if isinstance(images, torch.utils.data.IterableDataset):
        return False
    return isinstance(images, torch.utils.data.Dataset) or type(images).__module__.startswith("datasets.")


def _batches(images: Any, batch_size: int, image_key: str | None = None) -> Iterator[torch.Tensor]:
    """Batches of a tensor (N, C, H, W), of a map-style data set of items (torch or 🤗 datasets, batched by a
    DataLoader) or of an iterable of batches. A batch (or item) is a tensor, an `(images, labels)` tuple or a dict
    (its `image_key`, else the first of `_IMAGE_KEYS`)."""
    if isinstance(images, torch.Tensor):
        yield from images.split(batch_size)
        return
    if _is_dataset(images):
        images = torch.utils.data.DataLoader(images, batch_size=batch_size)
    for batch in images:
        if isinstance(batch, dict):
            key = image_key or next((key for key in _IMAGE_KEYS if key in batch), None)
            if key not in batch:
                raise ValueError(f"No images under `image_key={key!r}` in a batch with keys {list(batch)}.")
            batch = batch[key]
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


@dataclass
class FeatureStatistics:
    """Reference statistics: the real-image state of torchmetrics' `FrechetInceptionDistance` (sum, sum of outer
    products and count of the features, float64), from which the metric computes mean and covariance.

    Args:
        state (`dict[str, torch.Tensor]`): `real_features_sum`, `real_features_cov_sum`, `real_features_num_samples`.
        extractor (`str`): the `identifier` of the feature extractor.
        metadata (`dict[str, str]`, *optional*): anything else worth keeping (data set, resolution, ...).
    """

    state: dict[str, torch.Tensor]
    extractor: str
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return int(self.state["real_features_num_samples"])

    @property
    def mean(self) -> torch.Tensor:
        return self.state["real_features_sum"] / self.num_samples

    @property
    def covariance(self) -> torch.Tensor:
        """Unbiased, as `FrechetInceptionDistance.compute` makes it."""
        n = self.num_samples
        return (self.state["real_features_cov_sum"] - n * torch.outer(self.mean, self.mean)) / (n - 1)

    def save(self, path: str | Path) -> None:
        """Writes the state as a safetensors file (no pickle), `extractor` and `metadata` in its metadata."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tensors = {key: value.detach().cpu().contiguous() for key, value in self.state.items()}
        save_file(tensors, str(path), metadata={**self.metadata, "extractor": self.extractor})

    @classmethod
    def load(cls, path: str | Path) -> "FeatureStatistics":
        """Reads a file written by `save`; files of other layouts (older versions stored mean and covariance) are
        refused with a `ValueError`."""
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if set(f.keys()) != set(_REAL_STATE) or "extractor" not in metadata:
                raise ValueError(
                    f"{path} is not a statistics file of this version of diffusers-maskdm (older versions stored mean"
                    " and covariance): delete it and compute the statistics again."
                )
            state = {key: f.get_tensor(key) for key in _REAL_STATE}
        return cls(state, metadata["extractor"], metadata)


def build_frechet_metric(
    extractor: ModuleFeatures, reference: FeatureStatistics | None = None
) -> FrechetInceptionDistance:
    """A torchmetrics `FrechetInceptionDistance` computing with `extractor` (on its device), its real state set to
    `reference` through torchmetrics' own `load_state_dict`.

    The real state survives `metric.reset()` (only the generated side is cleared), so a training loop builds the
    metric once and reuses it. `sync_on_compute` is off: the metric runs on one process (the main one).

    Args:
        extractor (`ModuleFeatures`): the feature network (see `load_feature_extractor`).
        reference (`FeatureStatistics`, *optional*): statistics computed with the same extractor.
    """
    if not isinstance(extractor, ModuleFeatures):
        raise ValueError(
            f"`extractor` must be a ModuleFeatures, got {type(extractor).__name__}: build it with"
            " `load_feature_extractor(...)` or `ModuleFeatures(...)`."
        )
    metric = FrechetInceptionDistance(feature=extractor, reset_real_features=False, sync_on_compute=False)
    metric.to(next((t.device for t in extractor.state_dict().values()), torch.device("cpu")))
    if reference is not None:
        if reference.extractor != extractor.identifier:
            raise ValueError(
                f"The reference statistics were computed with {reference.extractor!r} but the metric uses"
                f" {extractor.identifier!r}: recompute them with the same feature extractor."
            )
        metric.load_state_dict({key: value.to(metric.device) for key, value in reference.state.items()}, strict=False)
    return metric


def _update(
    metric: FrechetInceptionDistance,
    images: Any,
    real: bool,
    name: str,
    batch_size: int = 64,
    image_key: str | None = None,
    num_samples: int | None = None,
    resolution: int | None = None,
    bar: tqdm | None = None,
) -> int:
    """Feeds images (at most `num_samples`) to one side of the metric; returns how many (at least 2)."""
    seen = 0
    for batch in _batches(images, batch_size, image_key):
        if resolution is not None and tuple(batch.shape[-2:]) != (resolution, resolution):
            raise ValueError(
                f"`resolution` is {resolution} but the images are {tuple(batch.shape[-2:])}: resize the data set to"
                " the resolution the statistics are keyed by."
            )
        batch = to_uint8_images(batch if num_samples is None else batch[: num_samples - seen], name)
        metric.update(batch.to(metric.device), real=real)
        seen += len(batch)
        if bar is not None:
            bar.update(len(batch))
        if num_samples is not None and seen >= num_samples:
            break
    if seen < 2:
        raise ValueError(f"`{name}` must hold at least 2 images for a covariance, got {seen}.")
    return seen


def compute_frechet_distance(
    real_images: torch.Tensor | Iterable[Any],
    generated_images: torch.Tensor | Iterable[Any],
    extractor: ModuleFeatures,
    batch_size: int = 64,
) -> float:
    """The Fréchet distance between two image sets in `extractor`'s feature space (FID with an Inception).

    Args:
        real_images, generated_images (`torch.Tensor`, data set or iterable of batches): float images in [0, 1]
            (batch, channels, height, width), or `torch.uint8`; a data set (torch or 🤗) yields items, anything else
            iterable yields batches; an item or batch is a tensor, an `(images, labels)` tuple or a dict.
        extractor (`ModuleFeatures`): the feature network.
        batch_size (`int`, *optional*, defaults to 64): batch size for a tensor or a data set of items.
    """
    metric = build_frechet_metric(extractor)
    _update(metric, real_images, True, "real_images", batch_size)
    _update(metric, generated_images, False, "generated_images", batch_size)
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


def generate_and_score(
    pipeline: Any,
    extractors: ModuleFeatures | list[ModuleFeatures],
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

    One CPU `torch.Generator` seeded with `seed` draws all batches in turn, so the samples depend on `seed` and
    `batch_size` only. One progress bar counts images; the pipeline's own per-step bar is silenced meanwhile.

    Args:
        pipeline: a diffusers pipeline called as `pipeline(batch_size=..., generator=..., output_type="np")`
            (`MaskedDDPMPipeline`, `DDPMPipeline`, ...).
        extractors (`ModuleFeatures` or a list of them): the feature networks.
        references (`FeatureStatistics` or a list of them): reference statistics, one per extractor and computed with
            it (see `load_or_compute_reference_statistics`).
        num_samples (`int`): images to generate (the N of FID-N); at least 2.
        batch_size (`int`, *optional*, defaults to 64): images per pipeline call.
        num_inference_steps (`int`, *optional*): denoising steps; the pipeline's default when `None`.
        seed (`int`, *optional*, defaults to 0): seed of the sampling generator.
        num_grid_images (`int`, *optional*, defaults to 0): keep the first images in `sample_images`.
        progress (`bool`, *optional*, defaults to `True`): show the progress bar.
        pipeline_kwargs: passed to every pipeline call (e.g. `class_labels`).
    """
    extractors = [extractors] if isinstance(extractors, ModuleFeatures) else list(extractors)
    references = [references] if isinstance(references, FeatureStatistics) else list(references)
    if len(extractors) != len(references) or not extractors:
        raise ValueError(
            f"`extractors` and `references` must pair up one to one, got {len(extractors)} and {len(references)}."
        )
    if not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"`num_samples` must be at least 2 for a covariance, got {num_samples!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}.")
    metrics = [build_frechet_metric(extractor, reference) for extractor, reference in zip(extractors, references)]
    if num_inference_steps is not None:
        pipeline_kwargs["num_inference_steps"] = num_inference_steps
    generator = torch.Generator(device="cpu").manual_seed(seed)
    saved_config = dict(getattr(pipeline, "_progress_bar_config", {}))
    pipeline.set_progress_bar_config(**{**saved_config, "disable": True})
    kept = []
    try:
        with tqdm(total=num_samples, desc="sampling for FID", unit="img", disable=not progress) as bar:
            for start in range(0, num_samples, batch_size):
                n = min(batch_size, num_samples - start)
                images = pipeline(batch_size=n, generator=generator, output_type="np", **pipeline_kwargs).images
                batch = torch.from_numpy(images).permute(0, 3, 1, 2).float()
                for reference in references:
                    resolution = int(reference.metadata.get("resolution", batch.shape[-1]))
                    if tuple(batch.shape[-2:]) != (resolution, resolution):
                        raise ValueError(
                            f"The pipeline generates {tuple(batch.shape[-2:])} images but the reference statistics"
                            f" are at resolution {resolution}: build the reference at the pipeline's `sample_size`."
                        )
                uint8 = to_uint8_images(batch, "pipeline images")
                for metric in metrics:
                    metric.update(uint8.to(metric.device), real=False)
                if sum(len(images) for images in kept) < num_grid_images:
                    kept.append(batch)
                bar.update(n)
    finally:
        pipeline._progress_bar_config = saved_config
    scores = [
        FrechetScore(e.metric_name, float(m.compute()), e.identifier, num_samples, r.num_samples, dict(r.metadata))
        for e, r, m in zip(extractors, references, metrics)
    ]
    sample_images = torch.cat(kept)[:num_grid_images] if kept else None
    return EvaluationResult(scores, num_samples, seed, num_inference_steps, sample_images)


def compute_fid_for_pipeline(
    pipeline: Any,
    reference: FeatureStatistics,
    extractor: ModuleFeatures,
    num_samples: int,
    batch_size: int = 64,
    num_inference_steps: int | None = None,
    seed: int = 0,
    progress: bool = True,
    **pipeline_kwargs: Any,
) -> float:
    """FID-N of a pipeline for a training loop: `generate_and_score` with one extractor, the distance as a float.

    Call it on the main process only (the metric does not synchronise across processes). The same `seed` every time
    makes successive values comparable. The arguments are those of `generate_and_score`.
    """
    options = dict(batch_size=batch_size, num_inference_steps=num_inference_steps, seed=seed, progress=progress)
    result = generate_and_score(pipeline, extractor, reference, num_samples, **options, **pipeline_kwargs)
    return result.scores[0].value
