"""diffusers-maskdm: masked diffusion models (MaskDM) as a diffusers extension package."""

__version__ = "0.1.0.dev0"
