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
"""The image convention: validation, quantisation and batch sources."""

import numpy as np
import pytest
import torch

from diffusers_maskdm.evaluation import load_or_compute_reference_statistics, to_uint8_images


def test_quantises_like_saving_a_png():
    images = torch.tensor([0.0, 0.5 / 255, 0.6 / 255, 0.5, 1.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    uint8 = to_uint8_images(images)
    assert uint8.dtype == torch.uint8
    assert uint8[0, 0, 0].tolist() == [0, 0, 1, 128, 255]


def test_grayscale_is_repeated_to_rgb():
    images = torch.rand(2, 1, 8, 8)
    uint8 = to_uint8_images(images)
    assert uint8.shape == (2, 3, 8, 8)
    assert torch.equal(uint8[:, 0], uint8[:, 2])


def test_uint8_passes_through():
    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    assert torch.equal(to_uint8_images(images), images)


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.rand(3, 8, 8), "shape"),
        (torch.rand(2, 4, 8, 8), "1 or 3 channels"),
        (torch.rand(2, 8, 8, 3), "1 or 3 channels"),
        (torch.rand(2, 3, 8, 8) * 2 - 1, r"\(images \+ 1\) / 2"),
        (torch.rand(2, 3, 8, 8) * 255, "images / 255"),
        (torch.full((2, 3, 8, 8), float("nan")), "NaN"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.int64), "dtype"),
        (np.zeros((2, 3, 8, 8)), "torch.Tensor"),
    ],
)
def test_bad_images_raise_value_error_naming_the_argument(images, message):
    with pytest.raises(ValueError, match=message) as info:
        to_uint8_images(images, name="generated")
    assert "`generated`" in str(info.value)


class _DictDataset(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"pixel_values": self.images[i], "class_labels": torch.tensor(0)}


def test_batch_sources_give_the_same_statistics(texture_extractor, tmp_path):
    images = torch.rand(10, 3, 4, 4)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.zeros(10)), batch_size=4)
    sources = {
        "tensor": images,
        "dataset of dicts": _DictDataset(images),
        "(images, labels) loader": loader,
        "list of dict batches": [{"images": images[:5]}, {"images": images[5:]}],
    }
    states = [
        load_or_compute_reference_statistics(
            source, texture_extractor, name, 4, cache_dir=tmp_path, batch_size=3
        ).state
        for name, source in sources.items()
    ]
    for state in states[1:]:
        for key, value in state.items():
            torch.testing.assert_close(value, states[0][key])  # float32 features, batched differently


def test_a_batch_without_an_image_key_is_named(texture_extractor, tmp_path):
    with pytest.raises(ValueError, match=r"No images in a batch with keys \['x'\]"):
        load_or_compute_reference_statistics(
            [{"x": torch.rand(2, 3, 4, 4)}], texture_extractor, "x", 4, cache_dir=tmp_path
        )
