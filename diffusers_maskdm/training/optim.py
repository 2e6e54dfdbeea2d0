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
"""AdamW for a `MaskedDiTModel`, with weight decay only where it regularises: the weight matrices."""

import torch
from torch import nn


# Parameters whose name ends in one of these are embeddings or position tables: decaying them towards zero only
# erases what they encode (ViT / U-ViT practice).
NO_DECAY_NAME_SUFFIXES = ("pos_embed", "class_embedding.weight", "mask_token")


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """
    Split the trainable parameters of `model` into a decayed and a non-decayed group for AdamW.

    No decay on: biases and norm weights (every parameter with fewer than 2 dimensions), position tables, class and
    other embedding tables (`nn.Embedding` weights), and parameters named in `NO_DECAY_NAME_SUFFIXES`.

    Args:
        model (`nn.Module`): the model.
        weight_decay (`float`): the decay of the first group.

    Returns:
        `list[dict]`: `[{"params": decayed, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]`,
        empty groups left out.
    """
    embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim < 2 or id(param) in embedding_weights or name.endswith(NO_DECAY_NAME_SUFFIXES):
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def build_optimizer(
    model: nn.Module,
    learning_rate: float,
    betas: tuple[float, float] = (0.9, 0.999),
    weight_decay: float = 1e-6,
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """
    AdamW over `model` with the parameter groups of `parameter_groups`.

    Args:
        model (`nn.Module`): the model to train.
        learning_rate (`float`): the peak learning rate (`--learning_rate`).
        betas (`tuple[float, float]`, *optional*, defaults to `(0.9, 0.999)`): `--adam_beta1`, `--adam_beta2`.
        weight_decay (`float`, *optional*, defaults to 1e-6): `--adam_weight_decay`, on weight matrices only.
        eps (`float`, *optional*, defaults to 1e-8): `--adam_epsilon`.
    """
    return torch.optim.AdamW(parameter_groups(model, weight_decay), lr=learning_rate, betas=betas, eps=eps)
