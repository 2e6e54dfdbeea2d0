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
"""Presets of the training script: model configurations (`--model_preset`) and the official recipes (`--recipe`).

Size presets (`tiny`, `small`, `base`) pick the patch size from the resolution. The `maskdm-*` configurations are the
networks of the official MaskDM code (https://github.com/jiachenlei/maskdm, `models/mask_uvit.py` built from its
configs), switch for switch and with the same parameter counts; each recipe is one of its training configs.
"""

import argparse
import copy
from typing import Any


# The official network (`models/mask_uvit.py`): 13 blocks with U-ViT's long skips and middle block, patch 4,
# `mlp_time_embed: False`, `qkv_bias: False`, `nn.GELU`, a position for the time token, truncated-normal init,
# `nn.LayerNorm` with PyTorch's default eps. `diffusers_maskdm.official_checkpoints` reads official checkpoints into it.
OFFICIAL_NETWORK = {
    "patch_size": 4, "num_layers": 13, "mlp_ratio": 4.0, "use_time_mlp": False, "attention_bias": False,
    "activation_fn": "gelu", "condition_token_positions": True, "weight_init": "trunc_normal", "norm_eps": 1e-5,
}  # fmt: skip

MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # Small enough to pre-train on two CPU cores in minutes (the README demo).
    "tiny": {"hidden_size": 128, "num_layers": 5, "num_attention_heads": 4, "mlp_ratio": 4.0},
    # U-ViT-S and U-ViT-M sizes (U-ViT paper) with this package's defaults: not the official MaskDM networks.
    "small": {"hidden_size": 512, "num_layers": 13, "num_attention_heads": 8, "mlp_ratio": 4.0},
    "base": {"hidden_size": 768, "num_layers": 17, "num_attention_heads": 12, "mlp_ratio": 4.0},
    # The official networks: CelebA 64 (the mask ablations), CelebA-HQ 256, and the 512-wide one at 256 px of the
    # VGGFace2 pre-training and few-shot transfer configs.
    "maskdm-celeba-64": {"sample_size": 64, "hidden_size": 512, "num_attention_heads": 8, **OFFICIAL_NETWORK},
    "maskdm-celebahq-256": {"sample_size": 256, "hidden_size": 768, "num_attention_heads": 12, **OFFICIAL_NETWORK},
    "maskdm-small-256": {"sample_size": 256, "hidden_size": 512, "num_attention_heads": 8, **OFFICIAL_NETWORK},
}
"""`MaskedDiTModel` arguments by preset name; size presets take the patch size from the resolution."""


def preset_config(
    name: str, resolution: int, in_channels: int = 3, num_class_embeds: int | None = None
) -> dict[str, Any]:
    """
    The `MaskedDiTModel` config of preset `name` for square images of side `resolution`.

    Args:
        name (`str`): one of `MODEL_PRESETS`.
        resolution (`int`): the image side in pixels (the model's `sample_size`); an official configuration takes
            only its own. A size preset takes the smallest patch size of at least 2 that leaves a grid of 4x4 to
            16x16 tokens, as U-ViT does (32 px -> 2, 64 px -> 4, 72 px -> 6, 256 px -> 16).
        in_channels (`int`, *optional*, defaults to 3): 1 for grayscale, 3 for RGB.
        num_class_embeds (`int`, *optional*): the number of classes of a class-conditional model.

    Raises:
        `ValueError`: for an official configuration at another resolution, or a resolution no patch size fits.
    """
    preset = MODEL_PRESETS[name]
    if preset.get("sample_size", resolution) != resolution:
        raise ValueError(
            f"model preset {name!r} is the official network at {preset['sample_size']} px, not {resolution} px: pass "
            f"--resolution {preset['sample_size']}, or use a size preset (tiny, small, base)."
        )
    patches = (p for p in range(2, resolution + 1) if resolution % p == 0 and 4 <= resolution // p <= 16)
    patch_size = preset.get("patch_size") or next(patches, None)
    if patch_size is None:
        raise ValueError(
            f"`resolution`={resolution} has no patch size >= 2 dividing it into a grid of 4x4 to 16x16 tokens: use a "
            "resolution that is a multiple of 16 (e.g. 32 or 64), or give the patch size with `--model_config`."
        )
    base = {"sample_size": resolution, "in_channels": in_channels, "patch_size": patch_size}
    return {**base, **preset, "num_class_embeds": num_class_embeds}


# The official recipes, one per training config of the official code. Each sets existing flags; a flag given on the
# command line wins. Shared by all: AdamW betas (0.99, 0.99), weight decay 0.03, noise prediction over 1000 steps,
# and the official EMA: decay 0.999 updated every step, warmed up as its EMA library (ema-pytorch) does by default,
# 1 - (1 + step)^(-2/3), which reaches 0.999 after about 31,600 steps. `clip_grad: null` in an official config (no
# clipping) is `NO_CLIPPING`: a norm no sound run reaches never clips (the norm is still logged; flags are finite).
NO_CLIPPING = 1e9
_OFFICIAL = {
    "learning_rate": 2e-4, "lr_scheduler": "constant", "lr_warmup_steps": 0, "adam_beta1": 0.99, "adam_beta2": 0.99,
    "adam_weight_decay": 0.03, "use_ema": True, "ema_decay": 0.999, "ema_inv_gamma": 1.0, "ema_power": 2 / 3,
    "prediction_type": "epsilon", "ddpm_num_steps": 1000,
}  # fmt: skip
_AT_64 = {"resolution": 64, "max_grad_norm": NO_CLIPPING, "ddpm_beta_schedule": "linear", **_OFFICIAL}
_AT_256 = {"resolution": 256, "max_grad_norm": 1.0, "ddpm_beta_schedule": "squaredcos_cap_v2", **_OFFICIAL}
_MASKS = {"mask_type": "block", "mask_rate": 0.9, "mask_block_size": 4, "mask_rounding": "floor"}

RECIPES: dict[str, dict[str, Any]] = {
    "maskdm-pretrain-64": {**_AT_64, **_MASKS},  # configs/ablation/msm/block4/celeba_90p.yml (and the other masks')
    "maskdm-finetune-64": {**_AT_64, "mask_rate": 0.0},  # configs/ablation/celeba_small.yml
    "maskdm-pretrain-256": {**_AT_256, **_MASKS},  # configs/celebahq_base_90p.yml, transfer/vggface2_small_90p.yml
    "maskdm-finetune-256": {**_AT_256, "mask_rate": 0.0, "learning_rate": 1e-5,  # configs/celebahq_base.yml
                            "lr_scheduler": "constant_with_warmup", "lr_warmup_steps": 5000},
    "maskdm-transfer-256": {**_AT_256, "mask_rate": 0.0, "random_flip": True, "learning_rate": 5e-5,
                            "max_grad_norm": NO_CLIPPING},  # configs/transfer/celebahq_small_0.1.yml
}  # fmt: skip
"""The flag values of each official recipe (`--recipe`), by the destination names of the training script's flags."""


def explicit_flags(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> set[str]:
    """The destinations of the flags that `argv` (default: `sys.argv[1:]`) gives, as opposed to their defaults."""
    unset = object()
    probe = copy.deepcopy(parser)
    probe.set_defaults(**dict.fromkeys(vars(parser.parse_args([])), unset))
    return {dest for dest, value in vars(probe.parse_args(argv)).items() if value is not unset}


def apply_recipe(args: argparse.Namespace, given: set[str]) -> dict[str, Any]:
    """
    Sets the values of recipe `args.recipe` on `args`, except the flags in `given` (the user's explicit ones), and
    records the resolved values in `args.recipe_values` (for the log and the model card); `{}` without a recipe.

    Raises:
        `ValueError`: when an explicit `--mask_rate` contradicts the recipe's stage, naming the fix.
    """
    recipe = RECIPES.get(args.recipe, {})
    for dest, value in recipe.items():
        if dest not in given:
            setattr(args, dest, value)
    if recipe and args.mask_type != "block" and "mask_block_size" not in given:
        args.mask_block_size = None  # The recipe's block size is for block masks only.
    if recipe and (recipe["mask_rate"] > 0) != (args.mask_rate > 0):
        stage, fix = ("masked pre-training", "finetune") if recipe["mask_rate"] > 0 else ("fine-tuning", "pretrain")
        other = args.recipe.replace("finetune" if fix == "pretrain" else "pretrain", fix).replace("transfer", fix)
        raise ValueError(
            f"--recipe {args.recipe} is {stage} but --mask_rate {args.mask_rate} says otherwise: drop --mask_rate, or "
            f"use --recipe {other}."
        )
    args.recipe_values = {dest: getattr(args, dest) for dest in recipe}
    return args.recipe_values


def recipe_summary(args: argparse.Namespace) -> str:
    """One log line: the recipe's resolved values, naming those that explicit flags changed."""
    changed = [dest for dest, value in RECIPES[args.recipe].items() if args.recipe_values[dest] != value]
    values = ", ".join(f"{dest}={value}" for dest, value in args.recipe_values.items())
    return f"Recipe {args.recipe}: {values}" + (f"; changed by flags: {', '.join(changed)}" if changed else "")
