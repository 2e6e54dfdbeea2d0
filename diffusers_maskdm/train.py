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
"""The training command: masked pre-training (`--mask_rate 0.9`) and fine-tuning (`--mask_rate 0`) of a MaskDM model.

    python -m diffusers_maskdm.train --model_preset tiny --max_train_steps 1000 --output_dir maskdm-pretrained
    accelerate launch -m diffusers_maskdm.train ...   # several GPUs or processes

`--help` lists the flags, `docs/training.md` the recipes; the phases live in `diffusers_maskdm.training`."""

import sys

from .training import CheckpointWriteError, NonFiniteLossError, parse_args, run_training


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, train, and return the exit status: 0 done, 1 refused or stopped (one line), 2 bad flags."""
    try:
        run_training(parse_args(argv))  # a bad flag exits here, with status 2
    # What a user can fix (flags that do not fit the data, a full disk, a diverging run) is one line, no traceback.
    except (ValueError, CheckpointWriteError, NonFiniteLossError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
