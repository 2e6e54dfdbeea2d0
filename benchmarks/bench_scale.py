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
"""Data preparation and training against a latent cache, on several processes: what a process holds.

Writes `--num_images` generated 64 px images, then with `--num_processes` CPU processes (`accelerate launch`, gloo):

1. `python -m diffusers_maskdm.prepare`: every image checked and encoded (random flips: two latents each) by a tiny
   random VAE that keeps the size (64x64x4 latents: 64 KiB an image and flip in bf16, mean and standard deviation,
   what Stable Diffusion's VAE gives a 256 px image), each process its share of the cache's shards; images per
   second over the whole command (start-up included).
2. The training command with the same flags, `--max_train_steps` masked steps of the tiny preset from the cache;
   each process's peak resident memory (`VmHWM`) against the cache's size on disk.

    python benchmarks/bench_scale.py --work_dir /tmp/scale         # 20,000 images, 2 processes
    python benchmarks/bench_scale.py --num_images 200 --quick      # a smoke run

Prints a markdown table; `--json PATH` also writes the figures.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from diffusers import AutoencoderKL
from PIL import Image


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work_dir", default="bench-scale")
    parser.add_argument("--num_images", type=int, default=20_000)
    parser.add_argument("--num_processes", type=int, default=2)
    parser.add_argument("--max_train_steps", type=int, default=50)
    parser.add_argument("--json", default=None)
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 training steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.max_train_steps = 5
    return args


def write_images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        if not (folder / f"{index:06d}.png").exists():
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{index:06d}.png")


def launched(args, command: list[str]) -> tuple[float, list[int]]:
    """Runs `command` under `accelerate launch`; its seconds and each launched process's peak resident bytes."""
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(args.num_processes)]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--multi_gpu"] if args.num_processes > 1 else []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    process = subprocess.Popen(
        [*launch, *command], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peaks, done = {}, threading.Event()

    def watch() -> None:  # VmHWM of every python below the launcher, read until it ends
        while not done.is_set():
            for child in psutil.Process(process.pid).children(recursive=True):
                try:
                    status = Path(f"/proc/{child.pid}/status").read_text()
                    peak = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])
                    peaks[child.pid] = max(peaks.get(child.pid, 0), peak * 1024)
                except (OSError, StopIteration, psutil.Error):
                    pass
            done.wait(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output = process.communicate()[0]
    done.set()
    watcher.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed:\n{output[-3000:]}")
    return time.perf_counter() - start, sorted(peaks.values(), reverse=True)[: args.num_processes]


def main(argv=None) -> dict:
    args = parse_args(argv)
    work = Path(args.work_dir)
    write_images(work / "images", args.num_images)
    vae = work / "vae"
    if not (vae / "config.json").exists():
        config = dict(down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",))
        config |= dict(block_out_channels=(8,), layers_per_block=1, latent_channels=4, norm_num_groups=8)
        AutoencoderKL(**config, sample_size=64).save_pretrained(vae)
    flags = ["--train_data_dir", str(work / "images"), "--resolution", "64", "--vae_name_or_path", str(vae)]
    flags += ["--random_flip", "--latents_cache_dir", str(work / "latents"), "--model_preset", "tiny"]
    flags += ["--output_dir", str(work / "run"), "--overwrite_output_dir", "--report_to", "none"]
    flags += ["--max_train_steps", str(args.max_train_steps), "--train_batch_size", "16", "--mask_rate", "0.9"]
    flags += ["--num_validation_images", "1", "--validation_inference_steps", "1", "--num_cpu_threads", "1"]
    for cached in (work / "latents").glob("*/shard-*"):
        cached.unlink()  # measured from scratch
    prepare_seconds, prepare_peaks = launched(args, ["-m", "diffusers_maskdm.prepare", *flags])
    cache_bytes = sum(path.stat().st_size for path in (work / "latents").glob("*/shard-*"))
    script = Path(__file__).resolve().parents[1] / "examples" / "train_masked_pretrain.py"
    train_seconds, train_peaks = launched(args, [str(script), *flags])
    report = {
        "args": vars(args),
        "prepare_seconds": prepare_seconds,
        "prepare_images_per_s": args.num_images / prepare_seconds,
        "prepare_peak_rss_bytes": prepare_peaks,
        "cache_bytes": cache_bytes,
        "train_seconds": train_seconds,
        "train_peak_rss_bytes": train_peaks,
        "train_peak_rss_over_cache": [peak / cache_bytes for peak in train_peaks],
        "load_average": os.getloadavg(),
    }
    mib = 2**20
    print(f"\n{args.num_images} images of 64 px, {args.num_processes} processes, cache {cache_bytes / mib:.0f} MiB\n")
    print("| phase | seconds | images/s | peak RSS per process (MiB) | peak RSS / cache size |")
    print("| --- | --- | --- | --- | --- |")
    print(
        f"| prepare | {prepare_seconds:.0f} | {report['prepare_images_per_s']:.0f} | "
        f"{', '.join(f'{p / mib:.0f}' for p in prepare_peaks)} | - |"
    )
    print(
        f"| train ({args.max_train_steps} steps) | {train_seconds:.0f} | - | "
        f"{', '.join(f'{p / mib:.0f}' for p in train_peaks)} | "
        f"{', '.join(f'{r:.2f}' for r in report['train_peak_rss_over_cache'])} |"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
