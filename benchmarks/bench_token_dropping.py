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
"""How much a training step costs when masked tokens are dropped (issue: the package core).

In one run, on the reference config (32x32x3, patch 2 = 256 tokens, width 256, 7 blocks with long skips, 4 heads,
batch 16, AdamW step included), it measures the step time and the activation memory (bytes saved for backward) of
`MaskedDiTModel` at block-mask rates 0, 0.5, 0.7 and 0.9, and of diffusers' `DiTTransformer2DModel` of the same
width, depth and patch size at full tokens. Configurations are timed in interleaved rounds so that load from other
processes hits them alike; the median step is reported, with ratios.

    python benchmarks/bench_token_dropping.py            # the reference run (a few minutes on 2 cores)
    python benchmarks/bench_token_dropping.py --quick    # a smoke run
"""

import argparse
import json
import platform
import statistics
import time
from datetime import datetime, timezone

import torch
from diffusers import DiTTransformer2DModel

from diffusers_maskdm import MaskedDiTModel, MaskGenerator, masked_mse_loss


def saved_activation_bytes(step_forward) -> int:
    """Bytes of the distinct tensors autograd saves for backward during `step_forward()` (the activation memory)."""
    seen = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = step_forward()
    loss.backward()
    return sum(seen.values())


def make_arms(args):
    """Each arm: (name, model, a function that runs the forward pass and returns the loss)."""
    torch.manual_seed(0)
    size, patch, batch = 32, 2, args.batch_size
    images = torch.randn(batch, 3, size, size)
    timesteps = torch.randint(0, 1000, (batch,))
    arms = []
    for rate in args.mask_rates:
        model = MaskedDiTModel(
            sample_size=size, patch_size=patch, hidden_size=256, num_layers=7, num_attention_heads=4
        )
        generator = MaskGenerator("block", rate, block_size=2)
        mask_seed = torch.Generator().manual_seed(0)

        def forward(model=model, generator=generator, mask_seed=mask_seed, rate=rate):
            mask = generator(batch, size // patch, generator=mask_seed) if rate > 0 else None
            return masked_mse_loss(model(images, timesteps, mask=mask).sample, images, mask, patch)

        arms.append((f"MaskedDiT, block mask {rate:.0%}", model, forward, generator.achieved_mask_rate(size // patch)))
    dit = DiTTransformer2DModel(
        num_attention_heads=4,
        attention_head_dim=64,
        in_channels=3,
        out_channels=3,
        num_layers=7,
        sample_size=size,
        patch_size=patch,
        num_embeds_ada_norm=1000,
    )
    labels = torch.randint(0, 1000, (batch,))

    def dit_forward():
        return torch.nn.functional.mse_loss(dit(images, timestep=timesteps, class_labels=labels).sample, images)

    arms.append(("diffusers DiTTransformer2DModel, full", dit, dit_forward, 0.0))
    return arms


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--mask_rates", type=float, nargs="+", default=[0.0, 0.5, 0.7, 0.9])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--steps_per_round", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="1 round of 1 step: checks that the script runs")
    parser.add_argument("--json", type=str, default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps_per_round = 1, 1

    arms = make_arms(args)
    optimizers = [torch.optim.AdamW(model.parameters(), lr=1e-4) for _, model, _, _ in arms]
    memory = [saved_activation_bytes(forward) for _, _, forward, _ in arms]
    for optimizer in optimizers:  # the first AdamW step allocates its state: keep it out of the timings
        optimizer.step()
        optimizer.zero_grad()

    times = [[] for _ in arms]
    for _ in range(args.rounds):
        for index, (_, _, forward, _) in enumerate(arms):
            for _ in range(args.steps_per_round):
                start = time.perf_counter()
                forward().backward()
                optimizers[index].step()
                optimizers[index].zero_grad(set_to_none=True)
                times[index].append(time.perf_counter() - start)

    base_time, base_memory = statistics.median(times[0]), memory[0]
    rows = []
    print("| model | achieved mask rate | ms/step | step rate vs 0 % | activation MB | memory vs 0 % |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (name, _, _, achieved), step_times, mem in zip(arms, times, memory):
        median = statistics.median(step_times)
        rows.append(
            {"arm": name, "achieved_mask_rate": achieved, "ms_per_step": 1000 * median, "activation_bytes": mem}
        )
        print(
            f"| {name} | {achieved:.3f} | {1000 * median:.0f} | {base_time / median:.2f}x | {mem / 2**20:.1f} | "
            f"{mem / base_memory:.3f} |"
        )
    print(
        f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, batch {args.batch_size}, {args.rounds}x{args.steps_per_round} timed steps per arm"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "batch_size": args.batch_size, "threads": torch.get_num_threads()}, f, indent=2)


if __name__ == "__main__":
    main()
