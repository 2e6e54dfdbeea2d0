"""Pipelines. The module paths are recorded in saved `model_index.json` files: they are public, do not move them."""

from .pipeline_masked_ddpm import MaskedDDPMPipeline


__all__ = ["MaskedDDPMPipeline"]
