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
"""`--streaming`: a stream split over processes and DataLoader workers, resumed at the very batch it stopped after."""

import itertools
import json
import os
import signal
from types import SimpleNamespace

import datasets
import pytest
import torch
from PIL import Image
from script_runner import assert_ok, assert_same_training, base_args, run_script, start_script, wait_for

from diffusers_maskdm.training import streaming
from diffusers_maskdm.training.streaming import build_streaming_dataset
from diffusers_maskdm.training.train import _resumable_batches


NUM_IMAGES, BATCH_SIZE, NUM_WORKERS = 23, 3, 2


@pytest.fixture(params=["image folder", "parquet shards"])
def numbered_stream(request, tmp_path, monkeypatch):
    """23 images whose pixel value is their number, streamed in blocks of 5 (blocks end mid-batch): PNG files, or
    two parquet files (whole shards go to each part of two, single examples to each part of four)."""
    monkeypatch.setattr(streaming, "STREAM_BLOCK", 5)
    (tmp_path / "data").mkdir()
    images = [Image.new("RGB", (8, 8), (i, i, i)) for i in range(NUM_IMAGES)]
    if request.param == "image folder":
        for i, image in enumerate(images):
            image.save(tmp_path / "data" / f"{i:03d}.png")
    else:
        for name, rows in (("a", images[:12]), ("b", images[12:])):
            datasets.Dataset.from_dict({"image": rows}).to_parquet(tmp_path / "data" / f"train-{name}.parquet")

    def build(rank=0, num_processes=1):
        options = dict(resolution=8, seed=3, rank=rank, num_processes=num_processes, cache_dir=tmp_path / "cache")
        return build_streaming_dataset(str(tmp_path / "data"), **options)

    return build


def take(dataset, count: int, epoch: int = 0) -> list[tuple[int, list[int]]]:
    """The first `count` batches the training loop gets from `epoch` on: (epoch, the images' numbers)."""
    loader = torch.utils.data.DataLoader(dataset, BATCH_SIZE, num_workers=NUM_WORKERS)
    batches = _resumable_batches(loader, SimpleNamespace(device=torch.device("cpu"), process_index=0), epoch, 0)
    return [(e, batch["pixel_values"][:, 0, 0, 0].tolist()) for e, _, batch in itertools.islice(batches, count)]


@pytest.mark.parametrize("rank", [0, 1])
@pytest.mark.parametrize("stop", [1, 3, 4, 6])  # mid-epoch (either worker next), at an epoch's end, in the next
def test_a_resumed_stream_gives_the_same_batches(numbered_stream, rank, stop):
    straight = take(numbered_stream(rank, 2), 10)
    first = numbered_stream(rank, 2)
    before = take(first, stop)
    saved = json.loads(json.dumps(first.state_dict()))  # as a checkpoint's training_state.json holds it
    resumed = numbered_stream(rank, 2)
    resumed.load_state_dict(saved)
    after = take(resumed, 10 - stop, epoch=saved["epoch"])
    assert before + after == straight


def test_processes_share_each_epoch_and_epochs_are_shuffled(numbered_stream):
    per_epoch = [[], []]
    for rank in range(2):
        for epoch, numbers in take(numbered_stream(rank, 2), 8):  # 4 batches per epoch on each process
            per_epoch[epoch] += numbers
    assert [sorted(numbers) for numbers in per_epoch] == [list(range(NUM_IMAGES))] * 2
    assert per_epoch[0] != per_epoch[1]


@pytest.mark.parametrize("numbered_stream", ["image folder"], indirect=True)
def test_unreadable_images_are_skipped_and_counted(numbered_stream, tmp_path, caplog):
    (tmp_path / "data" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a PNG")
    dataset = numbered_stream()
    numbers = sorted(n for _, batch in take(dataset, 8) for n in batch)
    assert numbers == list(range(NUM_IMAGES)) and dataset.num_skipped == 1


def test_only_class_label_columns_are_streamed(tmp_path):
    rows = {"image": [Image.new("RGB", (8, 8))] * 2, "label": [0, 7]}
    (tmp_path / "data").mkdir()
    datasets.Dataset.from_dict(rows).to_parquet(tmp_path / "data" / "train.parquet")
    with pytest.raises(ValueError, match="'label' holds Value.*not a ClassLabel"):
        build_streaming_dataset(str(tmp_path / "data"), label_column="label", cache_dir=tmp_path / "cache")


def test_a_killed_streaming_run_resumes_to_the_same_weights(image_dir, tiny_config, tmp_path):
    # accumulation across epoch ends (8 images, batches of 3, 2 workers), flips, EMA; killed during step 3
    def args(output_dir):
        flags = base_args(image_dir, tiny_config, output_dir)
        flags[flags.index("--train_data_dir")] = "--dataset_name"
        flags += ["--streaming", "--dataloader_num_workers", "2", "--gradient_accumulation_steps", "2"]
        return flags + ["--random_flip", "--use_ema", "--checkpointing_steps", "2", "--max_train_steps", "6"]

    assert_ok(run_script(args(tmp_path / "straight")))
    process = start_script(args(tmp_path / "killed"), tmp_path / "killed.log", faults={"pause_at_step": 3})
    wait_for(tmp_path / "killed" / ".test-paused-step-3", process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    result = run_script(args(tmp_path / "killed") + ["--resume_from_checkpoint", "latest"])
    assert_ok(result)
    assert "checkpoint-2 at step 2" in result.stderr + result.stdout
    saved = json.loads((tmp_path / "killed/checkpoint-6/training_state.json").read_text())
    assert saved["fixed"]["stream_parts"] == [1, 2] and len(saved["streams"]) == 1
    assert_same_training(tmp_path / "killed", tmp_path / "straight")


def test_two_processes_stream_their_own_parts(image_dir, tiny_config, tmp_path):
    flags = base_args(image_dir, tiny_config, tmp_path)
    flags[flags.index("--train_data_dir")] = "--dataset_name"
    result = run_script(flags + ["--streaming", "--max_train_steps", "3"], num_processes=2)
    assert_ok(result)
    assert "the stream's 1 shards do not divide into 2 parts" in result.stdout + result.stderr  # an image folder
    saved = json.loads((tmp_path / "checkpoint-3/training_state.json").read_text())
    assert saved["fixed"]["stream_parts"] == [2, 0]
    # 4 images each (every other one), batches of 3 and 1: the third step is epoch 1's first, 3 of block 0 used
    assert [(s["epoch"], [p["used"] for p in s["positions"]]) for s in saved["streams"]] == [(1, [3]), (1, [3])]


def test_a_process_whose_part_is_empty_stops_with_the_reason(numbered_stream):
    with pytest.raises(RuntimeError, match="Process 0 read no image of .* epoch 0: its part of the stream is empty"):
        take(numbered_stream(rank=20, num_processes=NUM_IMAGES), 1)  # parts 40 and 41 of 46, one image or none each


def test_the_prepare_command_has_nothing_to_prepare_for_a_stream(tmp_path, capsys):
    from diffusers_maskdm.prepare import main

    flags = ["--streaming", "--dataset_name", "x", "--max_train_steps", "1", "--output_dir", str(tmp_path)]
    assert main(flags) == 1
    assert "--streaming reads the data while training: there is nothing to prepare" in capsys.readouterr().err
