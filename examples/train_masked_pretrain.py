#!/usr/bin/env python
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
"""Masked pre-training (`--mask_rate 0.9`) and fine-tuning (`--mask_rate 0`) of a MaskDM transformer.

    accelerate launch examples/train_masked_pretrain.py --model_preset tiny --max_train_steps 1000 \\
        --output_dir maskdm-pretrained

The same command as `python -m diffusers_maskdm.train` (installed with the package); see `docs/training.md`.
"""

import sys

from diffusers_maskdm.train import main


if __name__ == "__main__":
    sys.exit(main())
