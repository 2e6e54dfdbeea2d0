"""Evaluation: FID and FD-DINOv2 with torchmetrics' Fréchet distance, cached reference statistics (see `fid.py`)."""

from .fid import *  # noqa: F403  (the public names, listed once: `fid.__all__`)
from .fid import __all__ as __all__
