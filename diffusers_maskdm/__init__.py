"""diffusers-maskdm: masked diffusion models (MaskDM, arXiv 2306.11363) as a diffusers extension package."""

__version__ = "0.1.0.dev0"

from .losses import masked_mse_loss
from .masking import MaskGenerator, draw_masks
from .models import MaskedDiTModel


__all__ = ["MaskGenerator", "MaskedDiTModel", "__version__", "draw_masks", "masked_mse_loss"]
