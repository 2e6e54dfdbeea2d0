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
"""Fixtures of the training tests: tiny generated image folders, a tiny model config, and script runners."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


TINY_MODEL = {"hidden_size": 32, "num_layers": 2, "num_attention_heads": 2, "patch_size": 2}


def _write_images(folder: Path, count: int, mode: str, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        shape = (20, 20) if mode == "L" else (20, 20, 3)
        Image.fromarray((rng.random(shape) * 255).astype(np.uint8), mode=mode).save(folder / f"{index}.png")
    return folder


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    """Eight random 20x20 RGB PNGs."""
    return _write_images(tmp_path_factory.mktemp("rgb"), 8, "RGB", seed=0)


@pytest.fixture(scope="session")
def gray_dir(tmp_path_factory) -> Path:
    """Eight random 20x20 grayscale PNGs."""
    return _write_images(tmp_path_factory.mktemp("gray"), 8, "L", seed=1)


@pytest.fixture(scope="session")
def labelled_dir(tmp_path_factory) -> Path:
    """Two class sub-folders (`cats/`, `dogs/`) of four RGB PNGs each."""
    root = tmp_path_factory.mktemp("labelled")
    _write_images(root / "cats", 4, "RGB", seed=3)
    _write_images(root / "dogs", 4, "RGB", seed=4)
    return root


@pytest.fixture(scope="session")
def corrupt_dir(tmp_path_factory) -> Path:
    """Six readable PNGs and one file named .png that is not an image."""
    folder = _write_images(tmp_path_factory.mktemp("corrupt"), 6, "RGB", seed=2)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG at all")
    return folder


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory) -> Path:
    """A `--model_config` JSON of a 2-block, 32-wide transformer with patch 2."""
    path = tmp_path_factory.mktemp("config") / "tiny.json"
    path.write_text(json.dumps(TINY_MODEL))
    return path
