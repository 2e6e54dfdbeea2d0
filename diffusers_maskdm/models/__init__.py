"""Models of diffusers-maskdm."""

from .masked_dit import MaskedDiTModel


__all__ = ["MaskedDiTModel"]
