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
"""FID-N of a pipeline: generate_and_score, compute_fid_for_pipeline, and examples/evaluate_fid.py end to end."""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from evaluation_testing import make_shape_images
from PIL import Image
from torch import nn
from vae_testing import make_tiny_vae

import diffusers_maskdm.pipelines as pipelines
from diffusers_maskdm.evaluation import (
    compute_fid_for_pipeline,
    generate_and_score,
    load_or_compute_reference_statistics,
)


# Skipped only while the pipeline module lacks the class (it is written in parallel); never for an import error.
pytestmark = pytest.mark.skipif(
    not hasattr(pipelines, "MaskedDDPMPipeline"), reason="diffusers_maskdm.pipelines has no MaskedDDPMPipeline yet"
)

RESOLUTION = 16


def _tiny_pipeline(latent: bool = False):
    """A 16 px pipeline: in pixel space, or on 8x8x4 latents that a tiny random VAE decodes to 16 px."""
    from diffusers_maskdm import MaskedDiTModel

    torch.manual_seed(0)
    size, channels = (RESOLUTION // 2, 4) if latent else (RESOLUTION, 3)
    config = dict(patch_size=4, hidden_size=32, num_layers=1, num_attention_heads=2)
    model = MaskedDiTModel(sample_size=size, in_channels=channels, **config)
    vae = make_tiny_vae(sample_size=RESOLUTION) if latent else None
    scheduler = DDPMScheduler(num_train_timesteps=20)
    pipeline = pipelines.MaskedDDPMPipeline(transformer=model, scheduler=scheduler, vae=vae)
    pipeline.set_progress_bar_config(disable=False, leave=True)
    return pipeline


def _reference(extractor, cache_dir):
    images = make_shape_images(24, size=RESOLUTION, seed=1)
    return load_or_compute_reference_statistics(images, extractor, "shapes", RESOLUTION, cache_dir=cache_dir)


def test_generate_and_score_is_seeded_and_keeps_grid_images(texture_extractor, tmp_path):
    pipeline = _tiny_pipeline()
    reference = _reference(texture_extractor, tmp_path)
    options = {"num_samples": 6, "batch_size": 4, "num_inference_steps": 2, "progress": False}
    result = generate_and_score(pipeline, texture_extractor, reference, seed=3, num_grid_images=5, **options)
    assert result.sample_images.shape == (5, 3, RESOLUTION, RESOLUTION)
    assert 0 <= result.sample_images.min() and result.sample_images.max() <= 1
    (score,) = result.scores
    assert score.metric == "fd" and score.extractor == texture_extractor.identifier
    assert score.num_samples == 6 and score.num_reference_samples == 24 and score.value > 0
    assert result["fd"] == score.value
    json.dumps(dataclasses.asdict(result.scores[0]))
    # The pipeline's own progress bar is restored.
    assert pipeline._progress_bar_config == {"disable": False, "leave": True}

    again = compute_fid_for_pipeline(pipeline, reference, texture_extractor, seed=3, **options)
    assert again == pytest.approx(score.value, rel=1e-6)
    other_seed = compute_fid_for_pipeline(pipeline, reference, texture_extractor, seed=4, **options)
    assert other_seed != pytest.approx(score.value, rel=1e-6)


def test_fid_of_a_latent_pipeline_scores_its_decoded_images(texture_extractor, tmp_path):
    pipeline = _tiny_pipeline(latent=True)
    decode, decoded = pipeline.vae.decode, []
    pipeline.vae.decode = lambda z, **kw: decoded.append(tuple(z.shape)) or decode(z, **kw)
    reference = _reference(texture_extractor, tmp_path)  # at the pixel size, RESOLUTION
    options = {"num_samples": 5, "batch_size": 3, "num_inference_steps": 2, "progress": False}
    fid = compute_fid_for_pipeline(pipeline, reference, texture_extractor, **options)
    assert np.isfinite(fid) and fid > 0
    assert decoded == [(3, 4, RESOLUTION // 2, RESOLUTION // 2), (2, 4, RESOLUTION // 2, RESOLUTION // 2)]
    reference.metadata["resolution"] = str(RESOLUTION // 2)  # the latent side is not the images' size
    with pytest.raises(ValueError, match=rf"makes \({RESOLUTION}, {RESOLUTION}\) images"):
        compute_fid_for_pipeline(pipeline, reference, texture_extractor, **options)


def test_fid_sampling_shows_one_progress_bar_over_images(texture_extractor, capsys, tmp_path):
    pipeline = _tiny_pipeline()
    reference = _reference(texture_extractor, tmp_path)
    capsys.readouterr()
    compute_fid_for_pipeline(pipeline, reference, texture_extractor, 6, 4, num_inference_steps=2)
    err = capsys.readouterr().err
    assert "sampling for FID" in err and "6/6" in err
    assert "2/2" not in err  # the pipeline's per-step bar is silenced meanwhile


def test_a_diffusers_pipeline_is_scored_too(texture_extractor, tmp_path):
    from diffusers import DDPMPipeline, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=RESOLUTION,
        block_out_channels=(8, 8),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    pipeline = DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=20))
    options = {"num_samples": 3, "batch_size": 2, "num_inference_steps": 2, "progress": False}
    result = generate_and_score(pipeline, texture_extractor, _reference(texture_extractor, tmp_path), **options)
    assert result["fd"] > 0


def test_bad_arguments(texture_extractor, tmp_path):
    pipeline = _tiny_pipeline()
    reference = _reference(texture_extractor, tmp_path)
    with pytest.raises(ValueError, match="`num_samples` must be at least 2"):
        generate_and_score(pipeline, texture_extractor, reference, num_samples=1, progress=False)
    with pytest.raises(ValueError, match="pair up"):
        generate_and_score(pipeline, [texture_extractor, texture_extractor], reference, num_samples=2, progress=False)
    reference.metadata["resolution"] = "32"
    with pytest.raises(ValueError, match="resolution 32"):
        generate_and_score(
            pipeline, texture_extractor, reference, num_samples=2, num_inference_steps=1, progress=False
        )


class _ScriptableTexture(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 5, stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean((2, 3)), self.conv(x).abs().mean((2, 3))], dim=1)


SCRIPT = Path(__file__).parents[2] / "examples" / "evaluate_fid.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("evaluate_fid", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("latent", [False, True], ids=["pixel", "latent"])
def test_evaluate_fid_script_end_to_end(tmp_path, latent):
    pipeline_dir = tmp_path / "pipeline"
    _tiny_pipeline(latent).save_pretrained(pipeline_dir)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for i, image in enumerate(make_shape_images(10, size=RESOLUTION, seed=2)):
        Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(data_dir / f"{i}.png")
    extractor_file = tmp_path / "tiny_features.pt"
    torch.jit.script(_ScriptableTexture()).save(str(extractor_file))

    argv = [
        "--pretrained_model_name_or_path", str(pipeline_dir),
        "--train_data_dir", str(data_dir),
        "--feature_extractor", str(extractor_file),
        "--num_samples", "5",
        "--batch_size", "3",
        "--scheduler", "DDIMScheduler",
        "--num_inference_steps", "2",
        "--num_grid_images", "4",
        "--reference_stats_dir", str(tmp_path / "stats"),
        "--output_dir", str(tmp_path / "out"),
        "--device", "cpu",
    ]  # fmt: skip
    script = _load_script()
    report = script.main(argv)

    written = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert written == json.loads(json.dumps(report))
    (score,) = written["scores"]
    assert score["metric"] == "fid" and "tiny_features.pt" in score["extractor"] and score["value"] > 0
    assert score["num_samples"] == 5 and score["num_reference_samples"] == 10
    assert written["scheduler"] == "DDIMScheduler" and written["num_inference_steps"] == 2
    assert written["pipeline_class"] == "MaskedDDPMPipeline" and written["resolution"] == RESOLUTION
    assert written["sampling_seconds"] > 0  # the pipeline calls were timed (with a VAE: decoding included)
    assert Image.open(tmp_path / "out" / "samples.png").size == (2 * RESOLUTION, 2 * RESOLUTION)
    assert len(list((tmp_path / "stats").glob("*.safetensors"))) == 1

    # Same seed, cached reference: the same value.
    assert script.main(argv)["scores"][0]["value"] == pytest.approx(score["value"], rel=1e-6)
    if not latent:  # two processes, each sampling its share: the same value again
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--multi_gpu"]
        launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        two = subprocess.run([*launch, str(SCRIPT), *argv], env=env, capture_output=True, text=True, timeout=300)
        assert two.returncode == 0, two.stderr[-3000:]
        value = json.loads((tmp_path / "out" / "evaluation.json").read_text())["scores"][0]["value"]
        assert value == pytest.approx(score["value"], rel=1e-6)
    bad_scheduler = list(argv)
    bad_scheduler[argv.index("DDIMScheduler")] = "NoSuchScheduler"
    with pytest.raises(ValueError, match="--scheduler"):
        script.main(bad_scheduler)


def _score_on_one_of_two_processes(rank: int, folder: str) -> None:
    import torch.distributed as dist
    from evaluation_testing import TextureNet

    from diffusers_maskdm.evaluation import ModuleFeatures

    dist.init_process_group("gloo", init_method=f"file://{folder}/group", rank=rank, world_size=2)
    extractor = ModuleFeatures(TextureNet(seed=0), name="texture-net")
    pipeline, sampled = _tiny_pipeline(), []
    call = type(pipeline).__call__
    type(pipeline).__call__ = lambda self, batch_size, **kwargs: (
        sampled.append(batch_size) or call(self, batch_size=batch_size, **kwargs)
    )
    options = {"num_samples": 10, "batch_size": 4, "num_inference_steps": 2, "progress": False, "seed": 5}
    value = compute_fid_for_pipeline(
        pipeline, _reference(extractor, Path(folder) / f"cache-{rank}"), extractor, **options
    )
    Path(folder, f"rank-{rank}.json").write_text(json.dumps({"fid": value, "sampled": sampled}))
    dist.destroy_process_group()


def test_two_processes_sample_their_shares_and_score_as_one(texture_extractor, tmp_path):
    # Batch k is seeded by (seed, k) and sampled by process k % 2; the generated features are added up over the
    # processes, so the FID equals one process's.
    torch.multiprocessing.spawn(_score_on_one_of_two_processes, args=(str(tmp_path),), nprocs=2)
    ranks = [json.loads((tmp_path / f"rank-{rank}.json").read_text()) for rank in range(2)]
    assert [rank["sampled"] for rank in ranks] == [[4, 2], [4]]  # batches 0 and 2, and batch 1, of 10 images by 4
    options = {"num_samples": 10, "batch_size": 4, "num_inference_steps": 2, "progress": False, "seed": 5}
    alone = compute_fid_for_pipeline(
        _tiny_pipeline(), _reference(texture_extractor, tmp_path), texture_extractor, **options
    )
    assert ranks[0]["fid"] == ranks[1]["fid"] == pytest.approx(alone, rel=1e-9)
