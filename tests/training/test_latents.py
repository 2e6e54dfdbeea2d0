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
"""Latent-space training (`--vae_name_or_path`): latents encoded once and cached, both stages on them, a latent
pipeline that decodes images of the pixel size."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL
from PIL import Image
from vae_testing import make_tiny_vae

from diffusers_maskdm import MaskedDDPMPipeline
from diffusers_maskdm.training import config_from_flags, run_training
from diffusers_maskdm.training.data import build_train_dataset
from diffusers_maskdm.training.latents import LatentDataset


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    """A saved tiny random AutoencoderKL: 16 px images <-> 8x8x4 latents."""
    folder = tmp_path_factory.mktemp("vae")
    make_tiny_vae().save_pretrained(folder)
    return folder


@pytest.fixture
def encoder_calls(monkeypatch):
    """Counts the batches `AutoencoderKL.encode` is called on."""
    calls, encode = [], AutoencoderKL.encode
    monkeypatch.setattr(
        AutoencoderKL, "encode", lambda self, x, *a, **k: calls.append(len(x)) or encode(self, x, *a, **k)
    )
    return calls


def flags(image_dir, tiny_config, output_dir, cache_dir, *extra):
    return [
        "--train_data_dir", str(image_dir), "--resolution", "16", "--train_batch_size", "4", "--max_train_steps", "2",
        "--num_validation_images", "1", "--validation_inference_steps", "1", "--report_to", "none",
        "--num_cpu_threads", "1", "--latents_cache_dir", str(cache_dir), "--output_dir", str(output_dir), *extra,
    ]  # fmt: skip


def test_both_stages_train_on_cached_latents(image_dir, tiny_config, vae_dir, encoder_calls, tmp_path):
    cache = tmp_path / "latents"
    pretrain = tmp_path / "pretrain"
    args = ["--model_config", str(tiny_config), "--vae_name_or_path", str(vae_dir), "--random_flip"]
    run_training(config_from_flags(flags(image_dir, tiny_config, pretrain, cache, *args, "--mask_rate", "0.5")))
    # The 8 images were encoded once per flip, in one batch each; the training steps never ran the encoder.
    assert encoder_calls == [8, 8]
    assert len(list(cache.glob("*/shard-*.safetensors"))) == 1  # 8 images: one shard
    transformer = json.loads((pretrain / "transformer" / "config.json").read_text())
    assert (transformer["sample_size"], transformer["in_channels"]) == (8, 4)
    assert (pretrain / "vae" / "config.json").is_file()

    # Fine-tuning takes the pre-trained pipeline's VAE and finds the same latents in the cache.
    finetune = tmp_path / "finetune"
    run_training(config_from_flags(flags(image_dir, tiny_config, finetune, cache, "--pretrained_model_name_or_path",
                                         str(pretrain), "--random_flip")))  # fmt: skip
    assert encoder_calls == [8, 8]
    pipe = MaskedDDPMPipeline.from_pretrained(finetune)
    images = pipe(batch_size=2, num_inference_steps=2, output_type="np", generator=torch.manual_seed(0)).images
    assert images.shape == (2, 16, 16, 3)


def test_latent_items_are_seeded_and_scaled_as_diffusers_scales_latents(image_dir, tmp_path):
    images = build_train_dataset(train_data_dir=image_dir, resolution=16, verify_images=True)
    plain = LatentDataset(images, make_tiny_vae(), "data", random_flip=True, cache_dir=tmp_path)
    scaled_vae = make_tiny_vae()
    scaled_vae.register_to_config(scaling_factor=0.5, shift_factor=0.25)
    scaled = LatentDataset(images, scaled_vae, "data", random_flip=True, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*/shard-*.safetensors"))) == 2  # the config is part of the key

    first, again = plain[(3, 5)]["latents"], plain[(3, 5)]["latents"]
    assert torch.equal(first, again)
    assert not torch.equal(first, plain[(4, 5)]["latents"])
    assert first.shape == (4, 8, 8)
    # The same draw z, scaled as (z - shift) * scale with each VAE's config (the tiny VAE's: no shift, 0.18215).
    z = first / make_tiny_vae().config.scaling_factor
    torch.testing.assert_close(scaled[(3, 5)]["latents"], (z - 0.25) * 0.5)
    # Over epochs an image is served in both flips: mirrored moments differ from the plain ones.
    mean = torch.stack([plain.moments(position)[0] for position in range(len(plain))])
    assert not torch.equal(mean[:, 0], mean[:, 1])


def test_cache_is_keyed_by_the_vae_weights(image_dir, tmp_path, encoder_calls):
    images = build_train_dataset(train_data_dir=image_dir, resolution=16, verify_images=True)
    LatentDataset(images, make_tiny_vae(seed=0), "data", cache_dir=tmp_path)
    LatentDataset(images, make_tiny_vae(seed=0), "data", cache_dir=tmp_path)
    assert len(encoder_calls) == 1  # the second found the first's latents
    LatentDataset(images, make_tiny_vae(seed=1), "data", cache_dir=tmp_path)
    assert len(encoder_calls) == 2 and len(list(tmp_path.glob("*/shard-*.safetensors"))) == 2


def test_fid_during_latent_training_scores_decoded_images(
    image_dir, tiny_config, vae_dir, tmp_path, caplog, monkeypatch
):
    from diffusers_maskdm.evaluation import find_fid_helper_inception

    try:
        find_fid_helper_inception()
    except Exception as error:  # the offline Inception is an optional download
        pytest.skip(f"no offline Inception: {error}")
    monkeypatch.setenv("DIFFUSERS_MASKDM_CACHE", str(tmp_path / "cache"))
    args = ["--model_config", str(tiny_config), "--vae_name_or_path", str(vae_dir), "--max_train_steps", "1"]
    args += ["--mask_rate", "0", "--eval_fid_steps", "1", "--eval_fid_num_images", "2"]
    with caplog.at_level("INFO"):
        run_training(config_from_flags(flags(image_dir, tiny_config, tmp_path / "out", tmp_path / "latents", *args)))
    assert "Step 1: FID-2 = " in caplog.text


def test_latent_items_keep_the_class_labels(labelled_dir, tmp_path):
    images = build_train_dataset(train_data_dir=labelled_dir, resolution=16, verify_images=True)
    latents = LatentDataset(images, make_tiny_vae(), "labelled", cache_dir=tmp_path)
    assert latents.num_classes == images.num_classes == 2
    assert [int(latents[i]["class_labels"]) for i in range(len(latents))] == [
        int(images[i]["class_labels"]) for i in range(len(images))
    ]


def test_a_resumed_latent_run_draws_what_the_straight_run_drew(image_dir, tiny_config, vae_dir, tmp_path):
    from safetensors.torch import load_file

    args = ["--model_config", str(tiny_config), "--vae_name_or_path", str(vae_dir), "--random_flip"]
    args += ["--mask_rate", "0.5", "--checkpointing_steps", "2", "--train_batch_size", "3"]
    cache = tmp_path / "latents"
    run_training(
        config_from_flags(flags(image_dir, tiny_config, tmp_path / "straight", cache, *args, "--max_train_steps", "4"))
    )
    resumed = tmp_path / "resumed"
    run_training(config_from_flags(flags(image_dir, tiny_config, resumed, cache, *args, "--max_train_steps", "2")))
    run_training(config_from_flags(flags(image_dir, tiny_config, resumed, cache, *args, "--max_train_steps", "4",
                                         "--resume_from_checkpoint", "latest")))  # fmt: skip
    weights = "transformer/diffusion_pytorch_model.safetensors"
    straight, again = load_file(tmp_path / "straight" / weights), load_file(resumed / weights)
    assert all(torch.equal(straight[name], again[name]) for name in straight)


def _prepare_on_one_of_two_processes(rank: int, port: int, folder: str, argv: list[str]) -> None:
    import os

    from accelerate import PartialState

    from diffusers_maskdm.training.setup import load_run_vae, prepare_data

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank))
    os.environ["LOCAL_RANK"] = str(rank)
    encoded, encode = [], LatentDataset._encode
    LatentDataset._encode = staticmethod(lambda *args: encoded.append(args[4]) or encode(*args))  # args[4]: first
    config = config_from_flags(argv)
    prepare_data(config, PartialState(cpu=True), load_run_vae(config))
    (Path(folder) / f"rank-{rank}.json").write_text(json.dumps(encoded))


def test_two_processes_encode_their_shards_and_training_reads_them_lazily(
    tiny_config, vae_dir, tmp_path, encoder_calls
):
    # 2,000 images are two shards of 1,024: each process encodes one (what `accelerate launch -m
    # diffusers_maskdm.prepare` does), then a training run with the same flags finds both and encodes nothing.
    images = tmp_path / "images"
    images.mkdir()
    for index in range(2000):
        Image.new("RGB", (16, 16), (index % 256, index // 256 * 30, 7)).save(images / f"{index:04d}.png")
    argv = flags(images, tiny_config, tmp_path / "out", tmp_path / "latents", "--vae_name_or_path", str(vae_dir))
    argv += ["--model_config", str(tiny_config), "--mask_rate", "0.5"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torch.multiprocessing.spawn(_prepare_on_one_of_two_processes, args=(port, str(tmp_path), argv), nprocs=2)
    assert [json.loads((tmp_path / f"rank-{rank}.json").read_text()) for rank in range(2)] == [[0], [1024]]
    assert len(list((tmp_path / "latents").glob("*/shard-*.safetensors"))) == 2

    run_training(config_from_flags(argv))
    assert encoder_calls == []  # both shards read from the cache
    dataset = LatentDataset(
        build_train_dataset(train_data_dir=images, resolution=16),
        make_tiny_vae(),
        "d",
        cache_dir=tmp_path / "x",
        shard_size=1024,
    )
    dataset[1500], dataset[3]
    assert not dataset._resident and sorted(dataset._files) == [0, 1]  # items read from the mapped shards, not held


def test_the_prepare_command_caches_what_training_reads(image_dir, tiny_config, vae_dir, tmp_path, encoder_calls):
    from script_runner import REPO, script_env

    argv = flags(image_dir, tiny_config, tmp_path / "out", tmp_path / "latents", "--vae_name_or_path", str(vae_dir))
    command = [sys.executable, "-m", "diffusers_maskdm.prepare", *argv]
    result = subprocess.run(command, cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Prepared 8 items" in result.stderr and not (tmp_path / "out").exists()
    run_training(config_from_flags([*argv, "--model_config", str(tiny_config), "--mask_rate", "0.5"]))
    assert encoder_calls == []  # the run found the prepared latents
    command[command.index("--vae_name_or_path") + 1] = str(tmp_path / "no-vae")  # a VAE that is not there
    result = subprocess.run(command, cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith("error: --vae_name_or_path=")
    assert "Traceback" not in result.stderr
