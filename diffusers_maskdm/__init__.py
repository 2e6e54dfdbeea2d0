"""diffusers-maskdm: masked diffusion models (MaskDM, arXiv 2306.11363) as a diffusers extension package.

The core names live here. Evaluation (FID, FD-DINOv2) is in `diffusers_maskdm.evaluation` and the training pieces in
`diffusers_maskdm.training`: they import heavier libraries (torchmetrics, datasets), so they load only when asked.
"""

__version__ = "0.1.0.dev0"

from .losses import masked_mse_loss
from .masking import MaskGenerator, draw_masks
from .models import MaskedDiTModel
from .pipelines import MaskedDDPMPipeline


__all__ = ["MaskGenerator", "MaskedDDPMPipeline", "MaskedDiTModel", "__version__", "draw_masks", "masked_mse_loss"]
