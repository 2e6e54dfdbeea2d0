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
"""The data preparation of a training run, ahead of it and spread over processes, with the run's own flags:

    python -m diffusers_maskdm.prepare --vae_name_or_path stabilityai/sd-vae-ft-mse --train_data_dir imagenet ...
    accelerate launch --num_processes 8 -m diffusers_maskdm.prepare ...   # each process encodes its share

It reads the data (and with a VAE checks every image and encodes the latent cache the run will read, in shards);
the training command with the same flags then finds it all cached. Nothing is written in `--output_dir`."""

import sys

from accelerate.logging import get_logger

from .training import parse_args
from .training.model_source import resolve_pretrained_transformer
from .training.setup import _build_accelerator, load_run_vae, prepare_data


logger = get_logger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (the training flags), prepare, and return the exit status: 0 done, 1 refused (one line)."""
    config = parse_args(argv)  # a bad flag exits here, with status 2
    if config.streaming:
        print("error: --streaming reads the data while training: there is nothing to prepare.", file=sys.stderr)
        return 1
    try:
        accelerator = _build_accelerator(config)
        source = None
        if config.pretrained_model_name_or_path is not None:
            options = (config.init_from_ema, config.revision, config.cache_dir)
            source = resolve_pretrained_transformer(config.pretrained_model_name_or_path, *options)
        vae = load_run_vae(config, source)
        dataset = prepare_data(config, accelerator, vae, vae.config.in_channels if vae else config.num_channels)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    logger.info(
        "Prepared %d items of %s (%d unreadable skipped).", len(dataset), dataset.description, dataset.num_skipped
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
