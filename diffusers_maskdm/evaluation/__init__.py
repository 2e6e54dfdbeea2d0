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
"""Evaluation: FID and FD-DINOv2 with torchmetrics' Fréchet distance, cached reference statistics.

Images are float tensors in [0, 1], (batch, channels, height, width), 1 or 3 channels; see `fid.py`.
"""

from .features import ModuleFeatures, find_fid_helper_inception, load_feature_extractor
from .fid import (
    EvaluationResult,
    FeatureStatistics,
    FrechetScore,
    build_frechet_metric,
    compute_fid_for_pipeline,
    compute_frechet_distance,
    generate_and_score,
    to_uint8_images,
)
from .reference_stats import load_or_compute_reference_statistics, reference_statistics_for_training_data


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
