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
"""Fixtures of the evaluation tests."""

import pytest
import torch
from evaluation_testing import TextureNet, make_shape_images

from diffusers_maskdm.evaluation import ModuleFeatures


@pytest.fixture
def shape_images() -> torch.Tensor:
    return make_shape_images(48, seed=1)


@pytest.fixture
def texture_extractor():
    return ModuleFeatures(TextureNet(seed=0), name="texture-net")
