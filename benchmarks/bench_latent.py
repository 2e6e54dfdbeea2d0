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
"""What training in a VAE's latent space saves at 256 px, measured side by side in one run.

Two `MaskedDiTModel`s of the same width and depth (256, 7 blocks with long skips, 4 heads): a latent one on the
32x32x4 latent of an 8x-downsampling VAE at patch 2 (256 tokens) and a pixel one on 256x256x3 images at patch 4
(4,096 tokens), each at full tokens and with 90 % block masks; one training step (forward, backward, AdamW) of the
same batch, timed in interleaved rounds so that load from other processes hits every arm alike; the median is
reported with ratios. Then the encoder of an `AutoencoderKL` with Stable Diffusion's layout (random weights: the
throughput does not depend on them; no download) encodes 256 px images: the images/s, and what encoding every batch
would add to a latent training step, against encoding the data set once (what `--latents_cache_dir` does).

    python benchmarks/bench_latent.py            # the reference run
    python benchmarks/bench_latent.py --quick    # a smoke run
"""

import argparse
import json
import platform
import statistics
import time
from datetime import datetime, timezone

import torch
from diffusers import AutoencoderKL

from diffusers_maskdm import MaskedDiTModel, MaskGenerator, masked_mse_loss


def stable_diffusion_vae() -> AutoencoderKL:
    """An `AutoencoderKL` laid out as Stable Diffusion's (8x downsampling, 4 latent channels), random weights."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        sample_size=256,
    )


def make_arms(args):
    """Each arm: (name, tokens, model, a function that runs the forward pass and returns the loss)."""
    torch.manual_seed(0)
    arms = []
    for name, size, channels, patch in (
        ("latent 32x32x4, patch 2", 32, 4, 2),
        ("pixel 256x256x3, patch 4", 256, 3, 4),
    ):
        grid = size // patch
        inputs = torch.randn(args.batch_size, channels, size, size)
        timesteps = torch.randint(0, 1000, (args.batch_size,))
        for rate in (0.0, 0.9):
            model = MaskedDiTModel(
                sample_size=size,
                patch_size=patch,
                in_channels=channels,
                hidden_size=args.width,
                num_layers=args.depth,
                num_attention_heads=4,
            )
            masks = MaskGenerator("block", rate, block_size=2) if rate > 0 else None
            mask_seed = torch.Generator().manual_seed(0)

            def forward(
                model=model,
                masks=masks,
                inputs=inputs,
                timesteps=timesteps,
                grid=grid,
                patch=patch,
                mask_seed=mask_seed,
            ):
                mask = masks(args.batch_size, grid, generator=mask_seed) if masks is not None else None
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                    prediction = model(inputs, timesteps, mask=mask).sample
                return masked_mse_loss(prediction.float(), inputs, mask, patch)

            visible = grid * grid - (masks.num_masked(grid) if masks is not None else 0)
            arms.append((f"{name}, {'90 % block mask' if rate else 'full'}", visible, model, forward))
    return arms


def time_training_steps(arms, args) -> list[float]:
    optimizers = [torch.optim.AdamW(model.parameters(), lr=1e-4) for _, _, model, _ in arms]
    for (_, _, _, forward), optimizer in zip(arms, optimizers):  # warm-up step: allocates the AdamW state
        forward().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    times = [[] for _ in arms]
    for _ in range(args.rounds):
        for index, (_, _, _, forward) in enumerate(arms):
            start = time.perf_counter()
            forward().backward()
            optimizers[index].step()
            optimizers[index].zero_grad(set_to_none=True)
            times[index].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


@torch.no_grad()
def encoder_images_per_second(args) -> float:
    vae = stable_diffusion_vae().eval()
    images = torch.rand(args.batch_size, 3, 256, 256) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
        vae.encode(images)  # warm-up
        start = time.perf_counter()
        for _ in range(args.rounds):
            vae.encode(images).latent_dist.sample()
    return args.rounds * args.batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3, help="timed steps per arm, interleaved")
    parser.add_argument("--fp32", dest="bf16", action="store_false", help="fp32 instead of bf16 autocast")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny widths, one round")
    parser.add_argument("--json", type=str, default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.quick:
        args.width, args.depth, args.rounds, args.batch_size = 32, 1, 1, 1

    arms = make_arms(args)
    step_seconds = time_training_steps(arms, args)
    encoder = encoder_images_per_second(args)

    latent_full = step_seconds[0]
    print("| arm | tokens computed | ms/step | step time vs the full latent step |")
    print("| --- | --- | --- | --- |")
    rows = []
    for (name, tokens, _, _), seconds in zip(arms, step_seconds):
        rows.append({"arm": name, "tokens": tokens, "ms_per_step": 1000 * seconds})
        print(f"| {name} | {tokens} | {1000 * seconds:.0f} | {seconds / latent_full:.2f}x |")
    pixel_full, pixel_masked, latent_masked = step_seconds[2], step_seconds[3], step_seconds[1]
    print(
        f"\ntoken ratio pixel/latent: {arms[2][1] / arms[0][1]:.0f}x; measured step ratio: full "
        f"{pixel_full / latent_full:.1f}x, 90 % masked {pixel_masked / latent_masked:.1f}x"
    )
    per_step_encoding = args.batch_size / encoder
    print(
        f"encoder (AutoencoderKL, Stable Diffusion layout, 256 px): {encoder:.2f} images/s; encoding each batch of "
        f"{args.batch_size} would add {per_step_encoding:.2f} s to a {latent_full:.2f} s full latent step "
        f"({(latent_full + per_step_encoding) / latent_full:.1f}x) and to a {latent_masked:.2f} s masked one "
        f"({(latent_masked + per_step_encoding) / latent_masked:.1f}x); cached latents encode each image once"
    )
    print(
        f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, batch {args.batch_size}, {'bf16' if args.bf16 else 'fp32'}, width {args.width}, "
        f"depth {args.depth}, {args.rounds} timed steps per arm"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "encoder_images_per_second": encoder, **vars(args)}, f, indent=2)


if __name__ == "__main__":
    main()
