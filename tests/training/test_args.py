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
"""Every bad combination of flags is refused by `parse_args`, before training, with a message naming the flag."""

import json
from pathlib import Path

import pytest

from diffusers_maskdm import MaskedDiTModel
from diffusers_maskdm.training import TrainingConfig, parse_args
from diffusers_maskdm.training.args import build_parser
from diffusers_maskdm.training.setup import build_noise_scheduler


@pytest.fixture(scope="module")
def folders(tmp_path_factory, image_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("args")
    # A training output without EMA: transformer/ holds raw weights, no non_ema variant.
    no_ema = root / "no_ema"
    MaskedDiTModel(sample_size=16, patch_size=2, hidden_size=32, num_layers=2, num_attention_heads=2).save_pretrained(
        no_ema / "transformer"
    )
    not_maskdm = root / "not_maskdm"
    not_maskdm.mkdir()
    (not_maskdm / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    (root / "dangling").symlink_to(root / "nowhere")
    incomplete = root / "out" / "checkpoint-4"
    incomplete.mkdir(parents=True)
    (incomplete / "optimizer.bin").write_bytes(b"half")
    bad_json = root / "bad.json"
    bad_json.write_text("{not json")
    big_sample = root / "big.json"
    big_sample.write_text(json.dumps({"sample_size": 64}))
    odd_patch = root / "odd.json"
    odd_patch.write_text(json.dumps({"patch_size": 3}))
    a_file = root / "a_file"
    a_file.write_text("")
    return {
        "images": image_dir,
        "no_ema": no_ema,
        "not_maskdm": not_maskdm,
        "incomplete": incomplete,
        "out": root / "out",
        "dangling": root / "dangling",
        "bad_json": bad_json,
        "big_sample": big_sample,
        "odd_patch": odd_patch,
        "under_a_file": a_file / "out",
        "a_file": a_file,
    }


# Wrong on their own or together: `parse_args` refuses them (exit 2), creating nothing.
# (flags, the flag the message must name, words it must contain). Paths in {braces} come from `folders`.
BAD_FLAGS = [
    (["--seed", "4294967296"], "--seed", "must be in [0, 2**32)"),
    (["--lr_scheduler", "piecewise_constant"], "--lr_scheduler", "invalid choice"),
    (["--ddpm_num_steps", "300000000"], "--ddpm_num_steps", "in [1, 100000]"),
    (["--output_dir", "{out}/" + "a" * 300], "--output_dir", "over 255 bytes"),
    (["--output_dir", "{dangling}"], "--output_dir", "is a link to nothing"),
    (
        ["--pretrained_model_name_or_path", "{no_ema}", "--output_dir", "{no_ema}"],
        "--output_dir",
        "are the same folder",
    ),
    (["--dataset_name", "x", "--train_data_dir", "{images}"], "--dataset_name", "both given"),
    (["--train_data_dir", "/no/such/folder"], "--train_data_dir", "not a directory"),
    (["--resolution", "1"], "--resolution", "at least 2"),
    (["--max_train_samples", "0"], "--max_train_samples", "positive"),
    (["--mask_rate", "1.0"], "--mask_rate", "[0, 1)"),
    (["--mask_rate", "-0.1"], "--mask_rate", "[0, 1)"),
    (["--mask_rate", "nan"], "--mask_rate", "finite"),
    (["--mask_block_size", "0"], "--mask_block_size", "positive"),
    (["--mask_type", "block", "--mask_crop_size", "2"], "--mask_crop_size", "only applies to --mask_type crop"),
    (["--mask_type", "patch", "--mask_block_size", "2"], "--mask_block_size", "only applies to --mask_type block"),
    (["--pretrained_model_name_or_path", "{no_ema}", "--model_preset", "tiny"], "--model_preset", "Pass only one"),
    (["--init_from_ema"], "--init_from_ema", "needs --pretrained_model_name_or_path"),
    (["--learning_rate", "0"], "--learning_rate", "positive"),
    (["--learning_rate", "inf"], "--learning_rate", "finite"),
    (["--learning_rate", "nan"], "--learning_rate", "finite"),
    (["--max_train_steps", "0"], "--max_train_steps", "positive"),
    (["--train_batch_size", "0"], "--train_batch_size", "positive"),
    (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps", "positive"),
    (["--adam_beta1", "nan"], "--adam_beta1", "finite"),
    (["--adam_beta2", "1.0"], "--adam_beta2", "[0, 1)"),
    (["--adam_epsilon", "-inf"], "--adam_epsilon", "finite"),
    (["--max_grad_norm", "0"], "--max_grad_norm", "positive"),
    (["--ema_decay", "1.5"], "--ema_decay", "(0, 1)"),
    (["--class_dropout_prob", "1.0"], "--class_dropout_prob", "[0, 1)"),
    (["--ddpm_num_steps", "0"], "--ddpm_num_steps", "in [1, 100000]"),
    (["--checkpointing_steps", "0"], "--checkpointing_steps", "positive"),
    (["--checkpoints_total_limit", "0"], "--checkpoints_total_limit", "positive"),
    (["--validation_steps", "0"], "--validation_steps", "positive"),
    (["--max_consecutive_nonfinite_steps", "0"], "--max_consecutive_nonfinite_steps", "positive"),
    (["--mixed_precision", "fp16", "--cpu"], "--mixed_precision", "CUDA"),
    (["--output_dir", "{a_file}"], "--output_dir", "not a directory"),
    (["--output_dir", "{images}/run"], "--output_dir", "inside --train_data_dir"),
    (["--overwrite_output_dir", "--resume_from_checkpoint", "latest"], "--overwrite_output_dir", "pass one"),
]


@pytest.mark.parametrize("flags, flag, words", BAD_FLAGS, ids=[" ".join(case[0])[:60] for case in BAD_FLAGS])
def test_bad_flags_are_refused_with_the_flag_named(flags, flag, words, folders, capsys):
    flags = [value.format(**folders) for value in flags]
    if "--output_dir" not in flags:
        flags += ["--output_dir", str(folders["out"])]
    if "--train_data_dir" not in flags and "--dataset_name" not in flags:
        flags += ["--train_data_dir", str(folders["images"])]
    with pytest.raises(SystemExit) as exit_info:
        parse_args(flags)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert flag in error and words in error, error


def test_parsing_creates_nothing(image_dir, tmp_path):
    output_dir = tmp_path / "new" / "out"
    config = parse_args(["--train_data_dir", str(image_dir), "--output_dir", str(output_dir), "--resolution", "64"])
    assert not (tmp_path / "new").exists()
    assert isinstance(config, TrainingConfig) and config.stage == "pretrain" and config.mask_rate == 0.9
    config = parse_args(["--output_dir", str(tmp_path), "--mask_rate", "0", "--ema_max_decay", "0.99"])
    assert config.stage == "finetune" and config.ema_decay == 0.99


def test_finetuning_from_a_pretrained_model_defaults_to_full_images(folders, tmp_path):
    flags = ["--pretrained_model_name_or_path", str(folders["no_ema"]), "--output_dir", str(tmp_path)]
    config = parse_args(flags)
    assert config.mask_rate == 0.0 and config.stage == "finetune"
    config = parse_args(flags + ["--mask_rate", "0.9"])  # continuing masked pre-training, when asked
    assert config.mask_rate == 0.9 and config.stage == "pretrain"


def test_help_shows_the_defaults():
    text = build_parser().format_help()
    assert "--train_batch_size TRAIN_BATCH_SIZE" in text and "(default: 16)" in text
    assert "(default: cosine)" in text


def test_the_noise_schedule_comes_from_the_flags_then_the_pretrained_pipeline(folders, tmp_path):
    flags = ["--pretrained_model_name_or_path", str(folders["no_ema"]), "--output_dir", str(tmp_path)]
    pretrained = {"prediction_type": "v_prediction", "num_train_timesteps": 500, "beta_end": 0.03}
    scheduler = build_noise_scheduler(parse_args(flags), pretrained)
    assert (scheduler.config.prediction_type, scheduler.config.num_train_timesteps) == ("v_prediction", 500)
    assert scheduler.config.beta_end == 0.03
    scheduler = build_noise_scheduler(parse_args(flags + ["--prediction_type", "epsilon"]), pretrained)
    assert scheduler.config.prediction_type == "epsilon"  # what the user says wins
    assert build_noise_scheduler(parse_args(flags)).config.num_train_timesteps == 1000
