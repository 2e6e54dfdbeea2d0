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
"""What the benchmarks compare `MaskedDiTModel` with: diffusers' `DiTTransformer2DModel` of the same size."""

from diffusers import DiTTransformer2DModel


def dit_of_the_same_size(args) -> DiTTransformer2DModel:
    """diffusers' DiT (class-conditional adaLN-Zero, its standard form) with the width, depth, heads and patch size of
    `args` (`resolution`, `patch_size`, `hidden_size`, `num_layers`, `num_attention_heads`)."""
    return DiTTransformer2DModel(
        sample_size=args.resolution,
        in_channels=3,
        out_channels=3,
        patch_size=args.patch_size,
        num_attention_heads=args.num_attention_heads,
        attention_head_dim=args.hidden_size // args.num_attention_heads,
        num_layers=args.num_layers,
    )
