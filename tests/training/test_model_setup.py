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
"""Presets, the optimizer's parameter groups, and where a pre-trained transformer is loaded from."""

import json

import pytest
import torch

from diffusers_maskdm import MaskedDiTModel
from diffusers_maskdm.training import build_optimizer
from diffusers_maskdm.training.model_source import (
    new_model_config,
    read_model_config_file,
    resolve_pretrained_transformer,
)
from diffusers_maskdm.training.presets import MODEL_PRESETS, preset_config


def test_presets_match_the_paper_backbones():
    assert {k: MODEL_PRESETS["small"][k] for k in ("hidden_size", "num_layers", "num_attention_heads")} == {
        "hidden_size": 512,
        "num_layers": 13,
        "num_attention_heads": 8,
    }  # U-ViT-S
    assert {k: MODEL_PRESETS["base"][k] for k in ("hidden_size", "num_layers", "num_attention_heads")} == {
        "hidden_size": 768,
        "num_layers": 17,
        "num_attention_heads": 12,
    }  # U-ViT-M
    sizes = {resolution: preset_config("small", resolution)["patch_size"] for resolution in (16, 32, 64, 72, 128, 256)}
    assert sizes == {16: 2, 32: 2, 64: 4, 72: 6, 128: 8, 256: 16}
    with pytest.raises(ValueError, match="multiple of 16"):
        preset_config("tiny", 31)
    assert preset_config("maskdm-celeba-64", 64)["patch_size"] == 4
    with pytest.raises(ValueError, match="--resolution 64"):
        preset_config("maskdm-celeba-64", 32)
    model = MaskedDiTModel(**preset_config("tiny", 32, in_channels=1, num_class_embeds=10))
    assert (model.grid_size, model.config.in_channels, model.config.num_class_embeds) == (16, 1, 10)
    assert sum(p.numel() for p in model.parameters()) < 2_000_000


def test_no_weight_decay_on_norms_biases_tables_and_embeddings():
    model = MaskedDiTModel(
        sample_size=8, patch_size=2, hidden_size=32, num_layers=3, num_attention_heads=2, num_class_embeds=4
    )
    decay, no_decay = build_optimizer(model, 1e-3, weight_decay=0.03).param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    not_decayed = {names[id(p)] for p in no_decay["params"]}
    assert decayed.isdisjoint(not_decayed) and decayed | not_decayed == set(names.values())
    assert {"pos_embed", "class_embedding.weight", "patch_embed.bias", "norm_out.weight"} <= not_decayed
    assert all(name.endswith("bias") or "norm" in name or "embed" in name for name in not_decayed), not_decayed
    assert {"patch_embed.weight", "proj_out.weight", "skip_projections.0.weight"} <= decayed
    optimizer = build_optimizer(model, 1e-3, weight_decay=0.03)
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.03, 0.0]


def _tiny(fill: float) -> MaskedDiTModel:
    model = MaskedDiTModel(sample_size=8, patch_size=2, hidden_size=16, num_layers=1, num_attention_heads=2)
    with torch.no_grad():
        model.proj_out.bias.fill_(fill)
    return model


def _bias(source) -> float:
    return float(source.load().proj_out.bias[0].detach())


def test_pretrained_layouts_and_ema_choice(tmp_path):
    # A training output with EMA: transformer/ holds EMA weights, the raw ones are the non_ema variant.
    output = tmp_path / "output"
    _tiny(1.0).save_pretrained(output / "transformer")
    _tiny(2.0).save_pretrained(output / "transformer", variant="non_ema")
    assert _bias(resolve_pretrained_transformer(str(output))) == 2.0
    source = resolve_pretrained_transformer(str(output), init_from_ema=True)
    assert source.is_ema and _bias(source) == 1.0

    # A checkpoint: transformer/ raw, transformer_ema/ EMA.
    checkpoint = tmp_path / "checkpoint-4"
    _tiny(3.0).save_pretrained(checkpoint / "transformer")
    _tiny(4.0).save_pretrained(checkpoint / "transformer_ema")
    assert _bias(resolve_pretrained_transformer(str(checkpoint))) == 3.0
    assert _bias(resolve_pretrained_transformer(str(checkpoint), init_from_ema=True)) == 4.0

    # A bare model folder, and a run without EMA: no EMA weights to pick.
    bare = tmp_path / "bare"
    _tiny(5.0).save_pretrained(bare)
    assert _bias(resolve_pretrained_transformer(str(bare))) == 5.0
    with pytest.raises(ValueError, match="--init_from_ema: .* holds no weights known to be EMA weights"):
        resolve_pretrained_transformer(str(bare), init_from_ema=True)

    with pytest.raises(ValueError, match="holds no MaskDM transformer"):
        resolve_pretrained_transformer(str(tmp_path))
    with pytest.raises(ValueError, match="neither a local folder nor a Hub repo"):
        resolve_pretrained_transformer("no-such-user/no-such-repo")


def test_model_config_file_is_fitted_to_the_data(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"hidden_size": 64, "num_layers": 3, "num_attention_heads": 4, "patch_size": 4}))
    config = new_model_config(32, 1, 10, model_config=read_model_config_file(path))
    assert (config["sample_size"], config["in_channels"], config["num_class_embeds"], config["patch_size"]) == (
        32,
        1,
        10,
        4,
    )
    path.write_text(json.dumps({"in_channels": 3}))
    with pytest.raises(ValueError, match="sets in_channels=3 but --num_channels"):
        new_model_config(32, 1, None, model_config=read_model_config_file(path))
    path.write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ValueError, match="describes a 'UNet2DModel'"):
        read_model_config_file(path)
    assert new_model_config(32, 3, None, model_preset="tiny")["hidden_size"] == MODEL_PRESETS["tiny"]["hidden_size"]
