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
"""Reference statistics: computed once, cached by data set, resolution, count and extractor."""

import os

import numpy as np
import pytest
import torch
from evaluation_testing import TextureNet, make_shape_images
from PIL import Image

from diffusers_maskdm.evaluation import (
    FeatureStatistics,
    ModuleFeatures,
    load_or_compute_reference_statistics,
    reference_statistics_for_training_data,
)


def _cached(images, extractor, cache_dir, **overrides):
    options = {"dataset_id": "shapes-v1", "resolution": 32, "num_samples": 40, "cache_dir": cache_dir}
    options.update(overrides)
    return load_or_compute_reference_statistics(images, extractor, progress=False, **options)


def test_second_call_reads_the_cache(shape_images, texture_extractor, tmp_path):
    net = texture_extractor.module
    net.calls = 0
    first = _cached(shape_images, texture_extractor, tmp_path)
    calls = net.calls
    assert calls > 0 and first.num_samples == 40
    assert os.path.isfile(first.metadata["cache_path"])

    second = _cached(shape_images, texture_extractor, tmp_path)
    assert net.calls == calls, "a cache hit must not run the extractor"
    torch.testing.assert_close(second.mean, first.mean)
    torch.testing.assert_close(second.covariance, first.covariance)
    assert second.metadata["dataset"] == "shapes-v1" and second.metadata["extractor"] == texture_extractor.identifier


def test_a_lazy_source_is_not_built_on_a_hit(shape_images, texture_extractor, tmp_path):
    _cached(shape_images, texture_extractor, tmp_path)

    def build():
        raise AssertionError("the data set must not be built on a cache hit")

    assert _cached(build, texture_extractor, tmp_path).num_samples == 40


@pytest.mark.parametrize(
    "change",
    ["dataset_id", "resolution", "num_samples", "extractor"],
)
def test_changing_a_key_field_recomputes(shape_images, texture_extractor, tmp_path, change):
    _cached(shape_images, texture_extractor, tmp_path)
    extractor, images, overrides = texture_extractor, shape_images, {}
    if change == "dataset_id":
        overrides["dataset_id"] = "shapes-v2"
    elif change == "resolution":
        images = make_shape_images(48, size=16, seed=1)
        overrides["resolution"] = 16
    elif change == "num_samples":
        overrides["num_samples"] = 30
    else:
        extractor = ModuleFeatures(TextureNet(seed=1), name="texture-net")
    extractor.module.calls = 0
    stats = _cached(images, extractor, tmp_path, **overrides)
    assert extractor.module.calls > 0
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    assert stats.num_samples == overrides.get("num_samples", 40)


def test_a_file_with_another_key_is_not_trusted(shape_images, texture_extractor, tmp_path):
    first = _cached(shape_images, texture_extractor, tmp_path)
    # Overwrite the entry with statistics of another key (as a hash collision or a hand-copied file would).
    FeatureStatistics(first.state, first.extractor, {"dataset": "other"}).save(first.metadata["cache_path"])
    texture_extractor.module.calls = 0
    _cached(shape_images, texture_extractor, tmp_path)
    assert texture_extractor.module.calls > 0


def test_images_at_another_resolution_are_refused(shape_images, texture_extractor, tmp_path):
    with pytest.raises(ValueError, match="`resolution` is 64"):
        _cached(shape_images, texture_extractor, tmp_path, resolution=64)
    with pytest.raises(ValueError, match="`num_samples` must be at least 2"):
        _cached(shape_images, texture_extractor, tmp_path, num_samples=1)


def _write_pngs(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(array).save(folder / f"{i:03d}.png")


def test_training_data_statistics_and_folder_fingerprint(texture_extractor, tmp_path):
    data_dir = tmp_path / "data"
    _write_pngs(data_dir, make_shape_images(12, size=32, seed=4))
    options = {"resolution": 32, "train_data_dir": str(data_dir), "cache_dir": tmp_path / "stats", "progress": False}
    stats = reference_statistics_for_training_data(texture_extractor, **options)
    assert stats.num_samples == 12
    assert str(data_dir.resolve()) in stats.metadata["dataset"]

    # The same data through the plain API gives the same statistics (the [-1, 1] -> [0, 1] mapping is right).
    images = torch.stack(
        [torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1) for p in sorted(data_dir.iterdir())]
    )
    direct = load_or_compute_reference_statistics(
        images.float() / 255, texture_extractor, "direct", 32, cache_dir=tmp_path / "direct", progress=False
    )
    torch.testing.assert_close(stats.mean, direct.mean, atol=1e-5, rtol=1e-5)

    texture_extractor.module.calls = 0
    reference_statistics_for_training_data(texture_extractor, **options)
    assert texture_extractor.module.calls == 0
    # A new image changes the folder's identity, so the statistics are recomputed.
    _write_pngs(data_dir / "more", make_shape_images(1, size=32, seed=5))
    assert reference_statistics_for_training_data(texture_extractor, **options).num_samples == 13
    assert texture_extractor.module.calls > 0
    # So does rewriting an image in place (same name and count).
    before = reference_statistics_for_training_data(texture_extractor, **options)
    _write_pngs(data_dir, make_shape_images(1, size=32, seed=6))
    os.utime(data_dir / "000.png", ns=(1, 1))  # a new modification time even on a coarse clock
    after = reference_statistics_for_training_data(texture_extractor, **options)
    assert after.num_samples == 13 and not torch.equal(after.mean, before.mean)


def test_computing_statistics_shows_progress_over_the_images(shape_images, texture_extractor, tmp_path, capsys):
    load_or_compute_reference_statistics(shape_images, texture_extractor, "shapes", 32, cache_dir=tmp_path)
    assert "48/48" in capsys.readouterr().err
    load_or_compute_reference_statistics(shape_images, texture_extractor, "shapes", 32, cache_dir=tmp_path)
    assert "48/48" not in capsys.readouterr().err  # a cache hit computes nothing


def test_a_write_killed_midway_leaves_no_cache_entry(shape_images, texture_extractor, tmp_path, monkeypatch):
    import diffusers_maskdm.caching as caching

    def half_written(tensors, filename, metadata):
        with open(filename, "wb") as file:
            file.write(b"\x00" * 64)  # the start of a file, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(caching, "save_file", half_written)
    with pytest.raises(KeyboardInterrupt):
        _cached(shape_images, texture_extractor, tmp_path)
    assert not list(tmp_path.glob("*.safetensors"))  # where the cache looks, there is nothing to misread
    monkeypatch.undo()
    assert _cached(shape_images, texture_extractor, tmp_path).num_samples == 40
