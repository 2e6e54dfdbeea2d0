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
"""Fréchet distances of image sets: zero against itself, growing with degradation, torchmetrics' arithmetic."""

import pytest
import torch
from evaluation_testing import TextureNet, add_noise, box_blur, make_shape_images, save_tiny_dinov2
from safetensors.torch import save_file
from torchmetrics.image.fid import FrechetInceptionDistance

from diffusers_maskdm.evaluation import (
    FeatureStatistics,
    ModuleFeatures,
    build_frechet_metric,
    compute_frechet_distance,
    load_feature_extractor,
    load_or_compute_reference_statistics,
    to_uint8_images,
)


def _statistics(images, extractor, cache_dir, **options):
    return load_or_compute_reference_statistics(images, extractor, "shapes", 32, cache_dir=cache_dir, **options)


def test_fid_of_a_set_against_itself_is_zero(shape_images, texture_extractor):
    assert abs(compute_frechet_distance(shape_images, shape_images, texture_extractor)) < 1e-6
    assert compute_frechet_distance(shape_images, make_shape_images(48, seed=2), texture_extractor) > 1e-3


@pytest.mark.parametrize(
    "degrade, levels",
    [(add_noise, [0.02, 0.05, 0.1, 0.2]), (box_blur, [2, 3, 5, 7])],
    ids=["noise", "blur"],
)
def test_fid_grows_with_degradation(shape_images, texture_extractor, degrade, levels):
    distances = [
        compute_frechet_distance(shape_images, degrade(shape_images, level), texture_extractor) for level in levels
    ]
    assert distances[0] > 1e-3
    for weaker, stronger in zip(distances, distances[1:]):
        assert stronger > 1.3 * weaker, distances


def test_strong_degradation_is_farther_than_another_sample(shape_images, texture_extractor):
    other_sample = make_shape_images(48, seed=2)
    baseline = compute_frechet_distance(shape_images, other_sample, texture_extractor)
    assert compute_frechet_distance(shape_images, add_noise(other_sample, 0.3), texture_extractor) > 2 * baseline


def test_cached_statistics_give_torchmetrics_value(shape_images, texture_extractor, tmp_path):
    generated = add_noise(make_shape_images(40, seed=3), 0.05)
    # Plain torchmetrics, fed the same uint8 images.
    metric = FrechetInceptionDistance(feature=texture_extractor, normalize=False)
    metric.update(to_uint8_images(shape_images), real=True)
    metric.update(to_uint8_images(generated), real=False)
    expected = float(metric.compute())

    stats = _statistics(shape_images, texture_extractor, tmp_path / "cache", batch_size=16, progress=False)
    assert stats.num_samples == 48 and stats.extractor == texture_extractor.identifier
    stats.save(tmp_path / "stats.safetensors")
    loaded = FeatureStatistics.load(tmp_path / "stats.safetensors")
    torch.testing.assert_close(loaded.covariance, stats.covariance)
    assert loaded.covariance.dtype == torch.float64 and loaded.mean.shape == (texture_extractor.num_features,)
    # The mean and covariance torchmetrics computes from the same state.
    features = texture_extractor(to_uint8_images(shape_images)).double()
    torch.testing.assert_close(loaded.mean, features.mean(0))
    torch.testing.assert_close(loaded.covariance, torch.cov(features.T))
    metric = build_frechet_metric(texture_extractor, loaded)
    metric.update(to_uint8_images(generated), real=False)
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-4)
    # reset() keeps the reference: a training loop reuses the metric.
    metric.reset()
    metric.update(to_uint8_images(generated), real=False)
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-4)


def test_a_statistics_file_of_the_old_layout_is_refused(tmp_path):
    path = tmp_path / "old.safetensors"
    metadata = {"num_samples": "48", "extractor": "texture-net", "metadata": "{}"}
    save_file(
        {"mean": torch.zeros(3, dtype=torch.float64), "covariance": torch.eye(3, dtype=torch.float64)}, path, metadata
    )
    with pytest.raises(ValueError, match="older versions stored mean and covariance"):
        FeatureStatistics.load(path)


def test_statistics_of_another_extractor_are_refused(shape_images, texture_extractor, tmp_path):
    stats = _statistics(shape_images, texture_extractor, tmp_path, progress=False)
    with pytest.raises(ValueError, match="same feature extractor"):
        build_frechet_metric(ModuleFeatures(TextureNet(seed=5), name="texture-net"), stats)


def test_fd_dinov2_with_a_tiny_random_model(shape_images, tmp_path):
    extractor = load_feature_extractor("dinov2:" + save_tiny_dinov2(tmp_path / "tiny-dinov2", num_hidden_layers=2))
    assert abs(compute_frechet_distance(shape_images, shape_images, extractor)) < 1e-4
    weak = compute_frechet_distance(shape_images, add_noise(shape_images, 0.05), extractor)
    strong = compute_frechet_distance(shape_images, add_noise(shape_images, 0.3), extractor)
    assert strong > weak > 0


def test_too_few_images_for_a_covariance(texture_extractor, tmp_path):
    one = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="`generated_images` must hold at least 2"):
        compute_frechet_distance(torch.rand(4, 3, 8, 8), one, texture_extractor)
    with pytest.raises(ValueError, match="`num_samples` must be at least 2"):
        _statistics(torch.rand(4, 3, 32, 32), texture_extractor, tmp_path, num_samples=1)
    with pytest.raises(ValueError, match="at least 2 images"):
        _statistics(one, texture_extractor, tmp_path)
    with pytest.raises(ValueError, match="ModuleFeatures"):
        compute_frechet_distance(one, one, TextureNet())
