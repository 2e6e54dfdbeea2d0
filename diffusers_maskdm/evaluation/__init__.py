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

Images are float tensors in [0, 1], (batch, channels, height, width), 1 or 3 channels; see `images.py`.
"""

from .features import (
    FEATURE_EXTRACTOR_NAMES,
    Dinov2Features,
    FeatureExtractor,
    ModuleFeatures,
    TorchmetricsInceptionFeatures,
    TorchScriptInceptionFeatures,
    find_fid_helper_inception,
    load_feature_extractor,
    resize_bilinear_tf1,
)
from .fid import (
    EvaluationResult,
    FeatureStatistics,
    FrechetScore,
    build_frechet_metric,
    compute_feature_statistics,
    compute_fid_for_pipeline,
    compute_frechet_distance,
    generate_and_score,
    generate_images,
    update_metric,
)
from .images import iterate_image_batches, pil_to_tensor, to_uint8_images
from .reference_stats import (
    default_cache_dir,
    fingerprint_image_folder,
    load_or_compute_reference_statistics,
    reference_statistics_for_training_data,
    reference_statistics_key,
    reference_statistics_path,
    training_data_identity,
)


__all__ = [
    "FEATURE_EXTRACTOR_NAMES",
    "Dinov2Features",
    "EvaluationResult",
    "FeatureExtractor",
    "FeatureStatistics",
    "FrechetScore",
    "ModuleFeatures",
    "TorchScriptInceptionFeatures",
    "TorchmetricsInceptionFeatures",
    "build_frechet_metric",
    "compute_feature_statistics",
    "compute_fid_for_pipeline",
    "compute_frechet_distance",
    "default_cache_dir",
    "find_fid_helper_inception",
    "fingerprint_image_folder",
    "generate_and_score",
    "generate_images",
    "iterate_image_batches",
    "load_feature_extractor",
    "load_or_compute_reference_statistics",
    "pil_to_tensor",
    "reference_statistics_for_training_data",
    "reference_statistics_key",
    "reference_statistics_path",
    "resize_bilinear_tf1",
    "to_uint8_images",
    "training_data_identity",
    "update_metric",
]
