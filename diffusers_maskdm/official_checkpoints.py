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
"""Checkpoints of the official MaskDM code (https://github.com/jiachenlei/maskdm) as a `MaskedDDPMPipeline`.

The official training script saves `{"step", "model", "opt", "ema", "scaler"}`: under `model` its diffusion wrapper's
state dict (the network as `model.encoder.*`, `model.encoder_to_output.*`, the schedule buffers `betas`, ... beside
it), under `ema` ema-pytorch's (the EMA network as `ema_model.model.*`). `scripts/convert_maskdm_to_diffusers.py`
writes a pipeline folder with these functions; docs/official_models.md says what matches.
"""

import math
import os
import re
from typing import Any

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from .models import MaskedDiTModel
from .pipelines import MaskedDDPMPipeline
from .training.presets import OFFICIAL_NETWORK


# The network's tensors, renamed after the blocks are (`_block_key`): official name -> `MaskedDiTModel` name.
_RENAMES = (
    (r"^encoder\.patch_embed\.proj\.", "patch_embed."),
    (r"^encoder\.time_embed\.0\.", "time_embedding.linear_1."),
    (r"^encoder\.time_embed\.2\.", "time_embedding.linear_2."),
    (r"^encoder\.norm\.", "norm_out."),
    (r"^encoder_to_output\.", "proj_out."),
    (r"\.attn\.proj\.", ".attn.to_out.0."),
    (r"\.mlp\.fc1\.", ".ff.net.0.proj."),
    (r"\.mlp\.fc2\.", ".ff.net.2."),
)
# Tensors of the networks that the official code no longer has (MaskDM-L's DWT network, removed at f783dcb).
_DWT_KEYS = ("approx_patch_embed", "detail_patch_embed", "approx_to_output", "detail_to_output")


class OfficialCheckpointError(ValueError):
    """A file that is not a checkpoint of the official MaskDM code this package can read; the message is one line."""


def load_official_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """
    Read an official `.pt` file with `torch.load(weights_only=True)` (tensors and plain containers, never code): the
    network's raw weights (`"model"`) and EMA weights (`"ema"`, `None` without), keyed as in the official
    `MaskedUViT`, the schedule buffers (`"buffers"`) and the training step (`"step"`). An `OfficialCheckpointError`
    for a file that holds other objects, a truncated file, a MaskDM-L (DWT) checkpoint or another layout.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises OSError, RuntimeError, EOFError, KeyError, ... for damaged files
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if unsafe:
            raise OfficialCheckpointError(
                f"{path} holds a pickled Python object ({unsafe.group(1)}), not only tensors: it is refused, since "
                "loading it would run code from the file (torch.load weights_only=True)."
            ) from None
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'unexpected end of file'}"
        raise OfficialCheckpointError(
            f"{path} cannot be read as a PyTorch checkpoint ({reason}); truncated?"
        ) from None
    model = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if isinstance(model, dict) and any(part in str(key) for key in model for part in _DWT_KEYS):
        raise OfficialCheckpointError(
            f"{path} is a MaskDM-L (DWT) checkpoint: its network is no longer in the official code, so it cannot be "
            "converted (the MaskDM-B checkpoints can)."
        )
    if not isinstance(model, dict) or "model.encoder_to_output.weight" not in model:
        parts = {str(key).split(".")[1] for key in model if str(key).startswith("model.")} if model else checkpoint
        found = sorted(map(str, parts))[:8] if isinstance(parts, (dict, set)) else type(checkpoint).__name__
        raise OfficialCheckpointError(
            f"{path} does not hold the official MaskDM network (expected a dict whose 'model' holds its "
            f"'model.encoder.*' and 'model.encoder_to_output.*' tensors; found {found})."
        )
    ema = checkpoint.get("ema") or {}
    prefix = "ema_model.model."
    return {
        "model": {key[len("model.") :]: value for key, value in model.items() if key.startswith("model.")},
        "ema": {key[len(prefix) :]: value for key, value in ema.items() if key.startswith(prefix)} or None,
        "buffers": {key: value for key, value in model.items() if not key.startswith("model.")},
        "step": checkpoint.get("step"),
    }


def infer_official_config(state_dict: dict[str, torch.Tensor], num_attention_heads: int | None = None) -> dict:
    """The `MaskedDiTModel` config of an official network's state dict, read from its tensors; `num_attention_heads`,
    which they do not record, defaults to width / 64, as in every official config."""
    try:
        width, in_channels, patch_size, _ = state_dict["encoder.patch_embed.proj.weight"].shape
        num_positions = state_dict["encoder.encoder_pos_embed"].shape[1]
        mlp_ratio = state_dict["encoder.mid_block.mlp.fc1.weight"].shape[0] / width
        out_channels = state_dict["encoder_to_output.weight"].shape[0] // patch_size**2
    except KeyError as error:
        raise OfficialCheckpointError(f"the network has no tensor {error} of the official MaskedUViT") from None
    num_classes = state_dict["encoder.label_emb.weight"].shape[0] if "encoder.label_emb.weight" in state_dict else None
    num_patches = num_positions - 1 - bool(num_classes)  # a position for each condition token, then the patches
    grid_size = math.isqrt(max(num_patches, 0))
    num_attention_heads = num_attention_heads or width // 64
    if not num_attention_heads or width % num_attention_heads or grid_size**2 != num_patches:
        raise OfficialCheckpointError(
            f"a network of width {width} and {num_positions} positions fits no MaskedDiTModel with "
            f"{num_attention_heads} heads: give the number of heads (--num_attention_heads)"
        )
    in_blocks = {key.split(".")[2] for key in state_dict if key.startswith("encoder.in_blocks.")}
    return {
        **OFFICIAL_NETWORK,
        "sample_size": grid_size * patch_size,
        "in_channels": in_channels,
        "out_channels": out_channels if out_channels != in_channels else None,
        "patch_size": patch_size,
        "hidden_size": width,
        "num_layers": 2 * len(in_blocks) + 1,
        "num_attention_heads": num_attention_heads,
        "mlp_ratio": mlp_ratio,
        "num_class_embeds": num_classes,
        "use_time_mlp": "encoder.time_embed.0.weight" in state_dict,
        "attention_bias": "encoder.mid_block.attn.q_bias" in state_dict,
    }


def _block_key(key: str, num_in_blocks: int) -> str:
    """Official block names to `MaskedDiTModel`'s: in-blocks, the middle block and out-blocks in order, the out-blocks'
    skip projections in reverse (out-block i takes the skip of in-block n-1-i)."""
    key = re.sub(r"^encoder\.in_blocks\.(\d+)\.", r"transformer_blocks.\1.", key)
    key = key.replace("encoder.mid_block.", f"transformer_blocks.{num_in_blocks}.")
    match = re.match(r"^encoder\.out_blocks\.(\d+)\.(skip_linear\.)?", key)
    if match and match.group(2):
        return f"skip_projections.{num_in_blocks - 1 - int(match.group(1))}.{key[match.end() :]}"
    if match:
        return f"transformer_blocks.{num_in_blocks + 1 + int(match.group(1))}.{key[match.end() :]}"
    return key


def convert_official_state_dict(state_dict: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """The official network's tensors under `MaskedDiTModel` names (`config` from `infer_official_config`): the fused
    q/k/v projection split in three (the k bias, absent there, is zero: it cannot change attention), the class
    embedding and its null class (`uncond_embed`) in one table, the class token's position row after the time token's.
    """
    state_dict = dict(state_dict)
    converted = {}
    if config["num_class_embeds"]:
        labels, null = state_dict.pop("encoder.label_emb.weight"), state_dict.pop("encoder.uncond_embed")
        converted["class_embedding.weight"] = torch.cat([labels, null])
    positions = state_dict.pop("encoder.encoder_pos_embed")
    if config["num_class_embeds"]:  # official order: class token, time token, patches; here time, class, patches
        positions = torch.cat([positions[:, 1:2], positions[:, :1], positions[:, 2:]], dim=1)
    converted["pos_embed"] = positions
    for key, value in state_dict.items():
        key = _block_key(key, config["num_layers"] // 2)
        for pattern, replacement in _RENAMES:
            key = re.sub(pattern, replacement, key)
        if key.endswith(".attn.qkv.weight"):
            for name, part in zip("qkv", value.chunk(3)):
                converted[key.replace("qkv.weight", f"to_{name}.weight")] = part
        elif key.endswith(".attn.q_bias"):
            converted[key.replace("q_bias", "to_q.bias")] = value
            converted[key.replace("q_bias", "to_k.bias")] = torch.zeros_like(value)
        elif key.endswith(".attn.v_bias"):
            converted[key.replace("v_bias", "to_v.bias")] = value
        else:
            converted[key] = value
    return converted


def official_noise_schedule(buffers: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The diffusers scheduler settings whose betas are the official `betas` buffer: its linear schedule (1e-4 to 0.02
    at 1000 steps, scaled by 1000 / steps) or its cosine one (`squaredcos_cap_v2`)."""
    betas = buffers.get("betas")
    if betas is None or betas.ndim != 1:
        raise OfficialCheckpointError("the checkpoint has no `betas` buffer beside the network: another layout")
    steps = len(betas)
    for settings in (
        {"beta_schedule": "linear", "beta_start": 0.1 / steps, "beta_end": 20 / steps},
        {"beta_schedule": "squaredcos_cap_v2"},
    ):
        settings["num_train_timesteps"] = steps
        if torch.allclose(DDPMScheduler(**settings).betas.double(), betas.double(), rtol=1e-4, atol=1e-8):
            return settings
    raise OfficialCheckpointError("the checkpoint's betas are neither the official linear nor cosine schedule")


def convert_official_checkpoint(
    checkpoint: dict[str, Any], num_attention_heads: int | None = None
) -> tuple[MaskedDDPMPipeline, MaskedDiTModel | None]:
    """The `MaskedDDPMPipeline` of a `load_official_checkpoint` result, with the EMA network (without EMA: the raw one)
    and the official sampler's DDIM scheduler (call it with `eta=1.0`), and the raw network (`None` without EMA)."""
    config = infer_official_config(checkpoint["model"], num_attention_heads)
    models = []
    for state_dict in (checkpoint["ema"], checkpoint["model"]):
        if state_dict is None:
            continue
        model = MaskedDiTModel(**config)
        try:
            converted = convert_official_state_dict(state_dict, config)
        except KeyError as error:
            raise OfficialCheckpointError(f"the network has no tensor {error} of the official MaskedUViT") from None
        expected = {key: value.shape for key, value in model.state_dict().items()}
        if {key: value.shape for key, value in converted.items()} != expected:
            odd = sorted(set(converted).symmetric_difference(expected))[:6] or "shapes differ"
            raise OfficialCheckpointError(f"the network does not fit the official MaskedUViT layout ({odd})")
        model.load_state_dict(converted)
        models.append(model.eval())
    # The official sampler: DDIM stepping through int(linspace(-1, T - 1, steps + 1)), x0 clipped to [-1, 1].
    schedule = official_noise_schedule(checkpoint["buffers"])
    scheduler = DDIMScheduler(**schedule, clip_sample=True, set_alpha_to_one=True, timestep_spacing="trailing")
    pipeline = MaskedDDPMPipeline(transformer=models[0], scheduler=scheduler)
    return pipeline, models[1] if len(models) == 2 else None
