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
"""Convert a checkpoint of the official MaskDM code (https://github.com/jiachenlei/maskdm) to a `MaskedDDPMPipeline`.

    python scripts/convert_maskdm_to_diffusers.py --repo_id jiachenlei/maskdm \\
        --filename pretrain/pretrain_celebahq_m90block4_20.pt --dump_path maskdm-b-celebahq-256-pretrain
    python scripts/convert_maskdm_to_diffusers.py --checkpoint_path results/model-20.pt --dump_path converted

The folder holds the EMA weights (what the official code samples with) as the transformer's weights, the raw weights
beside them as its `non_ema` variant (what the training script fine-tunes from), the official sampler's DDIM scheduler
and a model card. The file is read with `torch.load(weights_only=True)`: no code in it runs. See
docs/official_models.md.
"""

import argparse
import sys
from pathlib import Path

from huggingface_hub import hf_hub_download

from diffusers_maskdm.hub import save_model_card
from diffusers_maskdm.official_checkpoints import (
    OfficialCheckpointError,
    convert_official_checkpoint,
    load_official_checkpoint,
)
from diffusers_maskdm.training.model_source import NON_EMA_VARIANT


# The released MaskDM-B checkpoints (the official README): what the files themselves do not record.
RELEASED = {
    "pretrain_celebahq_m90block4_20.pt": "CelebA-HQ 256x256",
    "pretrain_vggface2_m90block4_20.pt": "VGGFace2 256x256",
}
CONVERSION = """
## Conversion

Converted from {source}, a checkpoint of the official MaskDM code
([jiachenlei/maskdm](https://github.com/jiachenlei/maskdm), MIT licence, Copyright (c) 2023 Richardson), by
`scripts/convert_maskdm_to_diffusers.py` of diffusers-maskdm: each tensor of its network (`models/mask_uvit.py`) moved
into `MaskedDiTModel`, whose outputs match the official code's to 1e-6 (fp32). The weights are the authors'; see the
source for their terms. `transformer/diffusion_pytorch_model.safetensors` holds the EMA weights, which the authors
sample with; `transformer/diffusion_pytorch_model.non_ema.safetensors` the raw weights, which the training script
fine-tunes from (`--init_from_ema` takes the EMA ones). The scheduler is the official sampler, DDIM with eta 1 and x0
clipped to [-1, 1]; the authors sample with 250 steps:

```python
images = pipe(batch_size=4, num_inference_steps=250, eta=1.0, generator=torch.manual_seed(0)).images
```
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint_path", type=Path, help="A local official .pt file.")
    source.add_argument("--repo_id", help="A Hub repo holding official .pt files, e.g. jiachenlei/maskdm.")
    parser.add_argument("--filename", help="With --repo_id: the file in the repo.")
    parser.add_argument("--revision", help="With --repo_id: a branch, tag or commit of the repo.")
    parser.add_argument("--dump_path", type=Path, required=True, help="The folder to write the pipeline into.")
    parser.add_argument(
        "--num_attention_heads", type=int, help="The network's heads (default: width / 64, as every official config)."
    )
    parser.add_argument("--hub_model_id", help="The repo the model card names (default: the folder's name).")
    args = parser.parse_args(argv)
    if args.repo_id and not args.filename:
        parser.error("--repo_id needs --filename (the .pt file in the repo)")
    if args.checkpoint_path and not args.checkpoint_path.is_file():
        parser.error(f"--checkpoint_path {args.checkpoint_path} is not a file")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.repo_id:
        try:
            path = hf_hub_download(args.repo_id, args.filename, revision=args.revision)
        except Exception as error:  # not found, offline, gated: the message says which
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise OfficialCheckpointError(
                f"{args.repo_id}/{args.filename} could not be downloaded ({reason})"
            ) from None
        revision = args.revision or "main"
        source = (
            f"[{args.repo_id}/{args.filename}](https://huggingface.co/{args.repo_id}/blob/{revision}/{args.filename})"
        )
    else:
        path, source = args.checkpoint_path, f"`{args.checkpoint_path.name}` (a local file)"
    checkpoint = load_official_checkpoint(path)
    pipeline, raw = convert_official_checkpoint(checkpoint, args.num_attention_heads)
    pipeline.save_pretrained(args.dump_path)
    if raw is not None:
        raw.save_pretrained(args.dump_path / "transformer", variant=NON_EMA_VARIANT)

    config = pipeline.transformer.config
    training = {"max_train_steps": checkpoint["step"], "use_ema": raw is not None, "resolution": config.sample_size}
    data = RELEASED.get(Path(args.filename or path).name)
    if data:
        training.update(stage="pretrain", mask_kind="block", mask_block_size="4x4 patches", mask_rate=0.9, data=data)
    repo_id = args.hub_model_id or args.dump_path.resolve().name
    card = save_model_card(args.dump_path, repo_id, training=training, license="mit")
    card.text = card.text.replace("## Citation", CONVERSION.format(source=source).lstrip() + "\n## Citation")
    card.save(args.dump_path / "README.md")
    weights = "EMA weights, the raw ones as the non_ema variant" if raw is not None else "its weights (no EMA in it)"
    print(
        f"Wrote a MaskedDDPMPipeline to {args.dump_path} ({weights}): {config.sample_size} px, patch "
        f"{config.patch_size}, width {config.hidden_size}, {config.num_layers} blocks, {config.num_attention_heads} "
        f"heads, {pipeline.scheduler.config.beta_schedule} schedule."
    )


if __name__ == "__main__":
    try:
        main()
    except OfficialCheckpointError as error:
        sys.exit(f"error: {error}")
