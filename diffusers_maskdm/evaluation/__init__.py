"""Evaluation: FID and FD-DINOv2 with torchmetrics' Fréchet distance, cached reference statistics (see `fid.py`)."""

from .fid import (
    EvaluationResult,
    FeatureStatistics,
    FrechetScore,
    ModuleFeatures,
    build_frechet_metric,
    compute_fid_for_pipeline,
    compute_frechet_distance,
    find_fid_helper_inception,
    generate_and_score,
    load_feature_extractor,
    load_or_compute_reference_statistics,
    reference_statistics_for_training_data,
    to_uint8_images,
)


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
