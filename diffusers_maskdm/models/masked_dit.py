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
"""`MaskedDiTModel`: a pixel-space diffusion transformer that drops masked tokens (MaskDM, arXiv 2306.11363)."""

import itertools
import json
import math
import os
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention import AttentionMixin, FeedForward
from diffusers.models.attention_processor import Attention, AttnProcessor, FusedAttnProcessor2_0
from diffusers.models.embeddings import TimestepEmbedding, Timesteps, get_2d_sincos_pos_embed
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.normalization import AdaLayerNormZero
from diffusers.utils import logging
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from ..caching import save_file_atomically
from ..masking import visible_indices


logger = logging.get_logger(__name__)


CONFIG_METADATA_KEY = "maskdm_config"
"""The safetensors metadata key under which a saved model's weights record the config they were saved with."""
# The config's keys by kind, as `_validate_config` checks them.
INT_KEYS = "sample_size in_channels patch_size hidden_size num_layers num_attention_heads"
OPTIONAL_INT_KEYS = ("out_channels", "num_class_embeds")
BOOL_KEYS = ("use_long_skip", "use_time_mlp", "attention_bias", "condition_token_positions")
CHOICES = {
    "time_conditioning": ("token", "adaln"),
    "position_embedding_type": ("learned", "sincos", "none"),
    "activation_fn": ("gelu-approximate", "gelu"),
    "weight_init": ("xavier", "trunc_normal"),
}


class MaskedDiTBlock(nn.Module):
    """
    A pre-norm transformer block. With `adaln=False` it is a U-ViT block (the condition travels as a token); with
    `adaln=True` it is a DiT adaLN-Zero block modulated by the condition vector.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        adaln: bool,
        attention_bias: bool = True,
        activation_fn: str = "gelu-approximate",
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.adaln = adaln
        self.norm1 = AdaLayerNormZero(dim) if adaln else nn.LayerNorm(dim, eps=norm_eps)
        if adaln:
            self.norm1.norm.eps = norm_eps  # diffusers' AdaLayerNormZero takes no eps argument
        self.attn = Attention(
            query_dim=dim, heads=num_heads, dim_head=dim // num_heads, bias=attention_bias, out_bias=True
        )
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=not adaln)
        self.ff = FeedForward(dim, mult=mlp_ratio, activation_fn=activation_fn)

    def forward(self, hidden_states: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        if not self.adaln:
            hidden_states = hidden_states + self.attn(self.norm1(hidden_states))
            return hidden_states + self.ff(self.norm2(hidden_states))
        normed, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(hidden_states, emb=condition)
        hidden_states = hidden_states + gate_msa[:, None] * self.attn(normed)
        normed = self.norm2(hidden_states) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        return hidden_states + gate_mlp[:, None] * self.ff(normed)


class MaskedDiTModel(ModelMixin, AttentionMixin, ConfigMixin):
    r"""
    A diffusion transformer in pixel space that computes only the visible tokens of a masked image (MaskDM).

    By default it is the paper's backbone, a U-ViT: the timestep (and class) enter as tokens, and long skip
    connections join the first half of the blocks to the second. Given a `mask`, the patch tokens get their position
    embedding, then the masked ones are dropped, so a step at 90 % masking costs about a tenth of a full one. The same
    weights run on full images (no mask) for fine-tuning and sampling.

    The defaults differ from the official MaskDM network in small ways (a time MLP, q/k/v biases, tanh-approximated
    GELU, no position for the time token, xavier initialisation, LayerNorm eps 1e-6); `use_time_mlp=False,
    attention_bias=False, activation_fn="gelu", condition_token_positions=True, weight_init="trunc_normal",
    norm_eps=1e-5` and an odd `num_layers` build it exactly (the named configurations of
    `diffusers_maskdm.training.presets` do; `diffusers_maskdm.official_checkpoints` loads the official weights).

    Attention layers are diffusers' `Attention`, so the attention processor API applies: `attn_processors`,
    `set_attn_processor`, `set_default_attn_processor`, `fuse_qkv_projections` / `unfuse_qkv_projections` and
    `set_attention_slice` (which `pipeline.enable_attention_slicing()` calls).

    Parameters:
        sample_size (`int`, *optional*, defaults to 32): The height and width of the (square) input image in pixels.
        in_channels (`int`, *optional*, defaults to 3): The number of channels of the input (1 for grayscale).
        out_channels (`int`, *optional*): The number of output channels. Defaults to `in_channels`.
        patch_size (`int`, *optional*, defaults to 2): The side of a square patch in pixels; must divide `sample_size`.
        hidden_size (`int`, *optional*, defaults to 256): The width of the transformer (token dimension).
        num_layers (`int`, *optional*, defaults to 7):
            The number of transformer blocks. With long skips, an odd number gives `num_layers // 2` blocks in, one
            middle block and `num_layers // 2` out, as U-ViT (the official models, "depth 12" or 13, have 13 blocks).
        num_attention_heads (`int`, *optional*, defaults to 4): The number of heads; must divide `hidden_size`.
        mlp_ratio (`float`, *optional*, defaults to 4.0): The hidden width of each MLP relative to `hidden_size`.
        use_long_skip (`bool`, *optional*, defaults to `True`):
            U-ViT long skips: each of the first `num_layers // 2` blocks stores its output, and the matching block of
            the second half concatenates it to its input and projects back to `hidden_size`.
        time_conditioning (`str`, *optional*, defaults to `"token"`):
            `"token"`: the timestep embedding is an extra token (the paper, U-ViT). `"adaln"`: DiT adaLN-Zero.
        position_embedding_type (`str`, *optional*, defaults to `"learned"`):
            `"learned"`, fixed 2D `"sincos"`, or `"none"` (the paper's ablation "no positional information").
        num_class_embeds (`int`, *optional*):
            The number of classes for class-conditional generation. One more embedding is kept as the null class
            (label `num_class_embeds`), used for unconditional samples and classifier-free guidance.
        use_time_mlp (`bool`, *optional*, defaults to `True`):
            Pass the sinusoidal timestep features through a two-layer MLP; `False` uses them as they are (the
            official network's identity time embedding).
        attention_bias (`bool`, *optional*, defaults to `True`): Biases on the query, key and value projections.
        activation_fn (`str`, *optional*, defaults to `"gelu-approximate"`): The MLP activation, `"gelu"` (exact,
            the official network's) or `"gelu-approximate"` (tanh).
        condition_token_positions (`bool`, *optional*, defaults to `False`):
            Give the condition tokens (time, class) rows of their own in the learned position table, which then has
            `num_condition_tokens + num_patches` rows (the official network's). Needs `time_conditioning="token"` and
            `position_embedding_type="learned"`.
        weight_init (`str`, *optional*, defaults to `"xavier"`):
            `"xavier"` (U-ViT/DiT style) or `"trunc_normal"` (linear weights from a normal of std 0.02 truncated at
            +-2, the patch embedding left at PyTorch's default, as the official code initialises).
        norm_eps (`float`, *optional*, defaults to 1e-6):
            The epsilon of every LayerNorm: 1e-6 as in DiT; the official MaskDM network uses PyTorch's default, 1e-5
            (with 1e-6 its weights give outputs about 5e-5 away from the official ones).
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["MaskedDiTBlock"]

    @register_to_config
    def __init__(
        self,
        sample_size: int = 32,
        in_channels: int = 3,
        out_channels: int | None = None,
        patch_size: int = 2,
        hidden_size: int = 256,
        num_layers: int = 7,
        num_attention_heads: int = 4,
        mlp_ratio: float = 4.0,
        use_long_skip: bool = True,
        time_conditioning: str = "token",
        position_embedding_type: str = "learned",
        num_class_embeds: int | None = None,
        use_time_mlp: bool = True,
        attention_bias: bool = True,
        activation_fn: str = "gelu-approximate",
        condition_token_positions: bool = False,
        weight_init: str = "xavier",
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        _validate_config(self.config)
        out_channels = out_channels or in_channels
        self.grid_size = sample_size // patch_size
        self.num_patches = self.grid_size**2
        self.gradient_checkpointing = False
        adaln = time_conditioning == "adaln"

        # Input: patches, position table, condition embeddings (registered in this order: optimizer states follow it).
        self.num_condition_tokens = 0 if adaln else 1 + bool(num_class_embeds)
        self.patch_embed = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)
        if position_embedding_type == "learned":
            num_rows = self.num_patches + (self.num_condition_tokens if condition_token_positions else 0)
            self.pos_embed = nn.Parameter(torch.zeros(1, num_rows, hidden_size))
        elif position_embedding_type == "sincos":
            table = get_2d_sincos_pos_embed(hidden_size, self.grid_size, base_size=self.grid_size).float()
            self.register_buffer("pos_embed", table[None], persistent=False)
        else:
            self.pos_embed = None
        self.time_proj = Timesteps(hidden_size, flip_sin_to_cos=True, downscale_freq_shift=0)
        mlp = TimestepEmbedding(hidden_size, 4 * hidden_size, out_dim=hidden_size) if use_time_mlp else None
        self.time_embedding = mlp or nn.Identity()
        self.class_embedding = nn.Embedding(num_class_embeds + 1, hidden_size) if num_class_embeds else None

        # Blocks, with U-ViT long skips from the first half into the second.
        self.transformer_blocks = nn.ModuleList(
            [
                MaskedDiTBlock(
                    hidden_size, num_attention_heads, mlp_ratio, adaln, attention_bias, activation_fn, norm_eps
                )
                for _ in range(num_layers)
            ]
        )
        num_skips = num_layers // 2 if use_long_skip else 0
        self.skip_projections = nn.ModuleList([nn.Linear(2 * hidden_size, hidden_size) for _ in range(num_skips)])

        # Output: a (modulated) norm and a linear map from each token to its patch of pixels.
        self.norm_out = nn.LayerNorm(hidden_size, eps=norm_eps, elementwise_affine=not adaln)
        self.norm_out_modulation = nn.Linear(hidden_size, 2 * hidden_size) if adaln else None
        self.proj_out = nn.Linear(hidden_size, patch_size * patch_size * out_channels)

        self.initialize_weights()

    def initialize_weights(self) -> None:
        """All weight initialisation in one place (`weight_init`); adaLN modulations and their output at zero."""
        xavier = self.config.weight_init == "xavier"
        linear_init = nn.init.xavier_uniform_ if xavier else partial(nn.init.trunc_normal_, std=0.02)

        def _basic_init(module):
            if isinstance(module, nn.Linear):
                linear_init(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

        self.apply(_basic_init)
        if xavier:
            # The patch embedding is a linear map of each flattened patch.
            nn.init.xavier_uniform_(self.patch_embed.weight.view(self.patch_embed.weight.shape[0], -1))
            nn.init.zeros_(self.patch_embed.bias)
        else:
            self.patch_embed.reset_parameters()
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.class_embedding is not None:
            nn.init.normal_(self.class_embedding.weight, std=0.02)
        if self.config.use_time_mlp:
            nn.init.normal_(self.time_embedding.linear_1.weight, std=0.02)
            nn.init.normal_(self.time_embedding.linear_2.weight, std=0.02)
        if self.config.time_conditioning == "adaln":
            # adaLN-Zero: every residual branch and the output start at zero, so each block starts as the identity.
            for block in self.transformer_blocks:
                nn.init.zeros_(block.norm1.linear.weight)
                nn.init.zeros_(block.norm1.linear.bias)
            nn.init.zeros_(self.norm_out_modulation.weight)
            nn.init.zeros_(self.norm_out_modulation.bias)
            nn.init.zeros_(self.proj_out.weight)
            nn.init.zeros_(self.proj_out.bias)

    def set_default_attn_processor(self) -> None:
        """Sets diffusers' plain `AttnProcessor` (no custom, fused or sliced attention) on every block. It computes
        the whole (tokens x tokens) score matrix of every head, where the default (PyTorch's scaled dot-product
        attention) does not: said when that is over a quarter GiB a sample."""
        self._warn_of_materialised_scores("set_default_attn_processor", self.config.num_attention_heads)
        self.set_attn_processor(AttnProcessor())

    # diffusers' `AttentionMixin` fuses only its newer attention modules, not the `Attention` layers of this model (as
    # its UNets and DiT, which carry these two methods of their own).
    def fuse_qkv_projections(self) -> None:
        """Computes each block's query, key and value with one matmul, for inference (`unfuse_qkv_projections` undoes
        it): diffusers' `FusedAttnProcessor2_0` on a fused copy of the weights, which training would not update."""
        self.original_attn_processors = self.attn_processors
        for block in self.transformer_blocks:
            block.attn.fuse_projections(fuse=True)
        self.set_attn_processor(FusedAttnProcessor2_0())

    def unfuse_qkv_projections(self) -> None:
        """Restores the processors that `fuse_qkv_projections` replaced and drops the fused weights."""
        if getattr(self, "original_attn_processors", None) is None:
            return
        self.set_attn_processor(self.original_attn_processors)
        self.original_attn_processors = None
        for block in self.transformer_blocks:
            del block.attn.to_qkv  # not a weight of the model: saved state dicts stay as before
            block.attn.fused_projections = False

    def set_attention_slice(self, slice_size: str | int | None) -> None:
        """Computes attention a slice of (batch x head) rows at a time (diffusers' `SlicedAttnProcessor`) to save memory;
        `slice_size` is `"auto"` (half the heads), `"max"` (one), a number from 1 to `num_attention_heads`, or `None`
        for the default processor again. `pipeline.enable_attention_slicing()` calls it."""
        num_heads = self.config.num_attention_heads
        slice_size = {"auto": max(1, num_heads // 2), "max": 1}.get(slice_size, slice_size)
        if slice_size is not None and not (_is_positive_int(slice_size) and slice_size <= num_heads):
            raise ValueError(
                f"`slice_size` must be 'auto', 'max', None or an integer from 1 to num_attention_heads={num_heads}, "
                f"got {slice_size!r}."
            )
        if slice_size is not None:
            self._warn_of_materialised_scores("set_attention_slice", slice_size)
        for block in self.transformer_blocks:
            block.attn.set_attention_slice(slice_size)

    def _warn_of_materialised_scores(self, method: str, heads: int) -> None:
        tokens = self.num_patches + self.num_condition_tokens
        gib = 4 * heads * tokens**2 / 2**30  # float32 scores of `heads` heads of one sample at a time
        if gib > 0.25:
            logger.warning(
                f"`{method}` computes {heads} heads' {tokens} x {tokens} attention scores at once: about {gib:.3g} "
                "GiB a sample in float32, where the default processor (scaled dot-product attention) keeps none."
            )

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        is_main_process: bool = True,
        safe_serialization: bool = True,
        variant: str | None = None,
        **kwargs,
    ) -> None:
        """`ModelMixin.save_pretrained`, then each safetensors file records the config it was saved with, so that a
        `config.json` edited afterwards is refused by `from_pretrained` (see `check_config_fingerprint`). The arguments
        are named because diffusers' pipelines pass `variant` only to a method that names it."""
        kwargs.update(is_main_process=is_main_process, safe_serialization=safe_serialization, variant=variant)
        super().save_pretrained(save_directory, **kwargs)
        if is_main_process and safe_serialization:
            fingerprint_weights(save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> "MaskedDiTModel":
        """`ModelMixin.from_pretrained`; a local folder whose `config.json` disagrees with the config its weights
        were saved with is refused with the difference (diffusers would load the weights into another network), and
        weights that lack a tensor of the model are refused, naming it."""
        folder = Path(pretrained_model_name_or_path, kwargs.get("subfolder") or "")
        if folder.is_dir():
            check_config_fingerprint(folder)
        model = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        # diffusers leaves a tensor the weights file lacks on the `meta` device and only says "newly initialized".
        missing = [
            name for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()) if tensor.is_meta
        ]
        if missing:
            raise ValueError(
                f"the weights of {folder} lack {', '.join(missing)} (the file is incomplete or of another network). "
                "Fix: load the complete folder that save_pretrained wrote."
            )
        return model

    @property
    def null_class_label(self) -> int | None:
        """The label of the null class (classifier-free guidance), or `None` for an unconditional model."""
        return self.config.num_class_embeds

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        class_labels: torch.LongTensor | None = None,
        mask: torch.BoolTensor | None = None,
        return_dict: bool = True,
        ids_keep: torch.LongTensor | None = None,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        """
        Args:
            sample (`torch.Tensor`): the noisy images, (batch, in_channels, sample_size, sample_size).
            timestep (`torch.Tensor`, `float` or `int`): the diffusion step, a number, a 0-d or a (batch,) tensor.
            class_labels (`torch.LongTensor`, *optional*): (batch,) labels in `[0, num_class_embeds]`, the last being
                the null class; `None` on a class-conditional model means the null class.
            mask (`torch.BoolTensor`, *optional*): (batch, num_patches), `True` = masked; the masked tokens are
                dropped before the first block. Every row must hide the same number of patches.
            return_dict (`bool`, *optional*, defaults to `True`): return a `Transformer2DModelOutput` or a tuple.
            ids_keep (`torch.LongTensor`, *optional*): instead of `mask`, the (batch, num_visible) indices of the
                visible patches (MAE's `ids_keep`; `masking.visible_indices(mask, num_masked)` computes them without
                reading the device, which a `mask` costs): training passes these, so that a step never waits on the
                host and a compiled model has one graph per sequence length.

        Returns:
            The prediction, of the input's spatial size with `out_channels` channels; masked patches are zero.
        """
        # 1. Input
        timestep, class_labels = self._check_inputs(sample, timestep, class_labels, mask, ids_keep)
        batch_size = sample.shape[0]
        hidden_states = self.patch_embed(sample).flatten(2).transpose(1, 2)  # (N, T, D)
        num_condition_positions = self.num_condition_tokens if self.config.condition_token_positions else 0
        if self.pos_embed is not None:
            # Positions are added before dropping, so each visible token still knows where it sits.
            hidden_states = hidden_states + self.pos_embed[:, num_condition_positions:].to(hidden_states.dtype)
        if mask is not None:
            ids_keep = visible_indices(mask.to(hidden_states.device))  # (N, T_visible)
        if ids_keep is not None:
            hidden_states = hidden_states.gather(1, ids_keep[..., None].expand(-1, -1, hidden_states.shape[-1]))

        # The sinusoidal features are computed in float32, then cast to the weights' dtype (fp16/bf16 safe).
        condition = self.time_embedding(self.time_proj(timestep).to(hidden_states.dtype))  # (N, D)
        if class_labels is not None:
            class_emb = self.class_embedding(class_labels).to(hidden_states.dtype)
            condition_tokens = [condition, class_emb]
            condition = condition + class_emb
        else:
            condition_tokens = [condition]
        if self.num_condition_tokens:
            condition_tokens = torch.stack(condition_tokens, dim=1)  # (N, C, D)
            if num_condition_positions:
                condition_tokens = condition_tokens + self.pos_embed[:, :num_condition_positions].to(condition.dtype)
            hidden_states = torch.cat([condition_tokens, hidden_states], dim=1)  # (N, C+T, D)
            block_condition = None
        else:
            block_condition = condition

        # 2. Blocks, the first half feeding the second through long skips
        num_skips = len(self.skip_projections)
        num_blocks = len(self.transformer_blocks)
        skips = []
        for index, block in enumerate(self.transformer_blocks):
            if index >= num_blocks - num_skips:
                skip_projection = self.skip_projections[num_blocks - 1 - index]
                hidden_states = skip_projection(torch.cat([hidden_states, skips.pop()], dim=-1))
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden_states = self._gradient_checkpointing_func(block, hidden_states, block_condition)
            else:
                hidden_states = block(hidden_states, block_condition)
            if index < num_skips:
                skips.append(hidden_states)

        # 3. Output
        hidden_states = hidden_states[:, self.num_condition_tokens :]  # (N, T_visible, D)
        hidden_states = self.norm_out(hidden_states)
        if self.norm_out_modulation is not None:
            shift, scale = self.norm_out_modulation(F.silu(condition)).chunk(2, dim=1)
            hidden_states = hidden_states * (1 + scale[:, None]) + shift[:, None]
        patches = self.proj_out(hidden_states)  # (N, T_visible, p*p*C_out)
        if ids_keep is not None:
            # Visible patches go back to their places; masked ones stay zero.
            full = patches.new_zeros(batch_size, self.num_patches, patches.shape[-1])
            patches = full.scatter(1, ids_keep[..., None].expand(-1, -1, patches.shape[-1]), patches)
        output = self.unpatchify(patches)

        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, T, p*p*C) patch tokens in row-major order -> (N, C, H, W) images."""
        p, g, c = self.config.patch_size, self.grid_size, self.config.out_channels or self.config.in_channels
        patches = patches.reshape(patches.shape[0], g, g, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", patches).reshape(patches.shape[0], c, g * p, g * p)

    def _check_inputs(
        self, sample, timestep, class_labels, mask, ids_keep
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`forward`'s checks, each naming the argument, the value and what is allowed; returns the (batch,) timesteps
        and class labels (the null class when a class-conditional model gets none). Values are read only where that
        costs no device sync (numbers, CPU tensors) and not while compiling: on an accelerator the check would make
        every step wait, and what training passes is made or checked on its way in."""
        config, device = self.config, getattr(sample, "device", None)
        read_values = not torch.compiler.is_compiling()
        expected = (config.in_channels, config.sample_size, config.sample_size)
        if not torch.is_tensor(sample) or sample.ndim != 4 or tuple(sample.shape[1:]) != expected:
            raise ValueError(
                f"`sample` must be a (batch, {', '.join(map(str, expected))}) tensor (in_channels, sample_size, "
                f"sample_size of the model's config), got {tuple(getattr(sample, 'shape', ())) or type(sample)}: "
                "resize or convert the images (e.g. grayscale vs RGB), or build the model to match."
            )
        dtype = self.patch_embed.weight.dtype
        if sample.dtype != dtype and not torch.is_autocast_enabled(device.type):
            raise ValueError(
                f"`sample` is {sample.dtype} but the model's weights are {dtype}: pass "
                f"`sample.to({dtype})` (or the model `.to({sample.dtype})`)."
            )
        batch_size = sample.shape[0]
        if not isinstance(timestep, (torch.Tensor, int, float)):
            raise ValueError(f"`timestep` must be a number or a tensor, got {type(timestep).__name__}.")
        timestep = torch.as_tensor(timestep).reshape(-1)
        if timestep.shape[0] not in (1, batch_size) or (
            read_values
            and timestep.is_floating_point()
            and timestep.device.type == "cpu"
            and not timestep.isfinite().all()
        ):
            raise ValueError(
                f"`timestep` must be a finite number, a 0-d tensor or a ({batch_size},) tensor, got {timestep.tolist()}."
            )
        if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) != (batch_size, self.num_patches)):
            # Shapes only here (no device sync); `visible_indices` checks the row counts with the sync it needs.
            raise ValueError(
                f"`mask` must be a bool tensor (True = masked) of shape (batch_size, num_patches) = ({batch_size}, "
                f"{self.num_patches}), got {mask.dtype} of shape {tuple(mask.shape)}: use `MaskGenerator`."
            )
        shape = (batch_size, max(1, min(ids_keep.shape[-1], self.num_patches))) if ids_keep is not None else None
        if ids_keep is not None and (mask is not None or ids_keep.dtype != torch.long or ids_keep.shape != shape):
            raise ValueError(
                f"`ids_keep` must be a (batch_size, num_visible) = ({batch_size}, 1 to {self.num_patches}) long tensor "
                f"of visible patch indices, given without `mask`; got {ids_keep.dtype} of shape "
                f"{tuple(ids_keep.shape)}{' and a mask' if mask is not None else ''}: use `masking.visible_indices`."
            )
        num_classes, timestep = config.num_class_embeds, timestep.to(device).expand(batch_size)
        if not num_classes and class_labels is not None:
            raise ValueError(
                "`class_labels` were given to an unconditional model (num_class_embeds=None): drop them, or "
                "train a class-conditional model with `num_class_embeds` set."
            )
        if class_labels is None:
            return timestep, torch.full((batch_size,), num_classes, device=device) if num_classes else None
        class_labels = torch.as_tensor(class_labels).reshape(-1)
        if (
            class_labels.shape[0] not in (1, batch_size)
            or class_labels.is_floating_point()
            or read_values
            and class_labels.device.type == "cpu"
            and bool(((class_labels < 0) | (class_labels > num_classes)).any())
        ):
            raise ValueError(
                f"`class_labels` must be one or ({batch_size},) integers in [0, {num_classes - 1}] (or {num_classes}, "
                f"the null class), got {class_labels.tolist()}."
            )
        return timestep, class_labels.to(device).long().expand(batch_size)


# The largest network a config may describe: 40 GB of fp32 weights alone, far beyond the paper's (about 100 M).
MAX_PARAMETERS = 1e10


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _validate_config(config) -> None:
    """Raises a `ValueError` naming the config key when a configuration (possibly an edited file) is invalid."""
    rules = {key: (_is_positive_int, "a positive integer") for key in INT_KEYS.split()}
    rules.update(
        {k: (lambda v: v is None or _is_positive_int(v), "a positive integer or null") for k in OPTIONAL_INT_KEYS}
    )
    rules.update({key: (lambda v: isinstance(v, bool), "true or false") for key in BOOL_KEYS})
    rules.update({key: (allowed.__contains__, f"one of {allowed}") for key, allowed in CHOICES.items()})
    rules["mlp_ratio"] = (
        lambda v: _is_positive_int(v) or isinstance(v, float) and math.isfinite(v) and v > 0,
        "a positive number",
    )
    rules["norm_eps"] = (lambda v: isinstance(v, float) and 0 < v < 1, "a number between 0 and 1 (e.g. 1e-6)")
    for key, (valid, expected) in rules.items():
        if not valid(config[key]):
            raise ValueError(f"config {key}={config[key]!r} must be {expected}.")
    size, patch, width = config["sample_size"], config["patch_size"], config["hidden_size"]
    # Bounded before anything is allocated: an edited config (hidden_size 1e9, num_class_embeds 1e10, sample_size
    # 65536) would otherwise ask for gigabytes to terabytes before the weights are compared with it.
    tokens = (size // patch) ** 2 + (config["num_class_embeds"] or 0)
    estimate = config["num_layers"] * (4 + 2 * float(config["mlp_ratio"])) * width**2 + tokens * width
    if estimate > MAX_PARAMETERS:
        raise ValueError(
            f"config describes a network of about {estimate:.2g} parameters (hidden_size={width}, num_layers="
            f"{config['num_layers']}, mlp_ratio={config['mlp_ratio']}, sample_size={size} and patch_size={patch}: "
            f"{(size // patch) ** 2} tokens, num_class_embeds={config['num_class_embeds']}), over the {MAX_PARAMETERS:.0e}"
            " this package builds. Fix: check the config file (it may be damaged)."
        )
    if size % patch:
        divisors = [d for d in range(1, size + 1) if size % d == 0]
        raise ValueError(f"config patch_size={patch} must divide `sample_size`={size}: use one of {divisors}.")
    if width % config["num_attention_heads"] or (config["position_embedding_type"] == "sincos" and width % 4):
        raise ValueError(
            f"config num_attention_heads={config['num_attention_heads']} must divide `hidden_size`={width} (and "
            "hidden_size must be a multiple of 4 for sincos positions)."
        )
    if config["condition_token_positions"] and (
        config["time_conditioning"] != "token" or config["position_embedding_type"] != "learned"
    ):
        raise ValueError(
            "config condition_token_positions=True needs time_conditioning='token' and position_embedding_type="
            "'learned' (condition tokens need learned positions)."
        )


def _saved_config(folder: Path) -> dict:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return {key: value for key, value in config.items() if not key.startswith("_")}


def fingerprint_weights(folder: str | os.PathLike) -> None:
    """Record the model config of `folder/config.json` in the metadata of each of its safetensors weights files,
    each rewritten to a temporary file renamed into place: a kill never leaves a weights file half written."""
    config = json.dumps(_saved_config(Path(folder)), sort_keys=True)
    for path in sorted(Path(folder).glob("*.safetensors")):
        save_file_atomically(load_file(path), path, metadata={"format": "pt", CONFIG_METADATA_KEY: config})


def check_config_fingerprint(folder: str | os.PathLike) -> None:
    """
    Refuse a model folder whose `config.json` disagrees with the config its weights were saved with (recorded by
    `fingerprint_weights`); folders without the record pass, as they always have.

    Raises:
        `ValueError`: naming the folder and showing each difference.
    """
    config = _saved_config(Path(folder))
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as weights:
            saved = json.loads((weights.metadata() or {}).get(CONFIG_METADATA_KEY, "null")) or config
        differences = [
            f"{key}={config.get(key, '(missing)')!r} in config.json, {saved.get(key, '(missing)')!r} with the weights"
            for key in sorted(set(saved) | set(config))
            if config.get(key) != saved.get(key)
        ]
        if differences:
            raise ValueError(
                f"{Path(folder, 'config.json')} does not describe the weights in {path.name} ({'; '.join(differences)}"
                "): the file was edited after saving. Fix: restore the config the weights were saved with."
            )
