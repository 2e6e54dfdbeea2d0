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
import os
from pathlib import Path

import pytest

from diffusers_maskdm import MaskedDiTModel
from diffusers_maskdm.training import parse_args


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
        "bad_json": bad_json,
        "big_sample": big_sample,
        "odd_patch": odd_patch,
        "under_a_file": a_file / "out",
    }


# (flags, the flag the message must name, words it must contain). Paths in {braces} come from `folders`.
BAD_FLAGS = [
    (["--dataset_name", "x", "--train_data_dir", "{images}"], "--dataset_name", "both given"),
    (["--train_data_dir", "/no/such/folder"], "--train_data_dir", "not a directory"),
    (["--resolution", "1"], "--resolution", "at least 2"),
    (["--resolution", "4"], "--resolution", "multiple of 16"),
    (["--resolution", "31"], "--resolution", "multiple of 16"),
    (["--max_train_samples", "0"], "--max_train_samples", "positive"),
    (["--mask_rate", "1.0"], "--mask_rate", "[0, 1)"),
    (["--mask_rate", "-0.1"], "--mask_rate", "[0, 1)"),
    (["--mask_block_size", "3"], "--mask_block_size", "does not divide"),
    (["--mask_type", "crop", "--mask_crop_size", "20"], "--mask_crop_size", "larger than the patch grid"),
    (["--mask_type", "block", "--mask_crop_size", "2"], "--mask_crop_size", "only applies to --mask_type crop"),
    (["--mask_type", "patch", "--mask_block_size", "2"], "--mask_block_size", "only applies to --mask_type block"),
    (["--resolution", "8", "--mask_rate", "0.95"], "--mask_rate", "hides every patch"),
    (["--pretrained_model_name_or_path", "{not_maskdm}"], "--pretrained_model_name_or_path", "no MaskDM transformer"),
    (["--pretrained_model_name_or_path", "{images}"], "--pretrained_model_name_or_path", "no MaskDM transformer"),
    (["--pretrained_model_name_or_path", "{no_ema}", "--model_preset", "tiny"], "--model_preset", "Pass only one"),
    (["--pretrained_model_name_or_path", "{no_ema}", "--resolution", "32"], "--resolution", "sample_size=16"),
    (
        ["--pretrained_model_name_or_path", "{no_ema}", "--resolution", "16", "--init_from_ema"],
        "--init_from_ema",
        "EMA",
    ),
    (["--init_from_ema"], "--init_from_ema", "needs --pretrained_model_name_or_path"),
    (["--model_config", "{bad_json}"], "--model_config", "not valid JSON"),
    (["--model_config", "/no/such.json"], "--model_config", "cannot be read"),
    (["--model_config", "{big_sample}"], "--model_config", "sample_size=64"),
    (["--model_config", "{odd_patch}"], "--resolution", "patch_size=3"),
    (["--learning_rate", "0"], "--learning_rate", "positive"),
    (["--max_train_steps", "0"], "--max_train_steps", "positive"),
    (["--train_batch_size", "0"], "--train_batch_size", "positive"),
    (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps", "positive"),
    (["--adam_beta2", "1.0"], "--adam_beta2", "[0, 1)"),
    (["--max_grad_norm", "0"], "--max_grad_norm", "positive"),
    (["--ema_decay", "1.5"], "--ema_decay", "(0, 1)"),
    (["--class_dropout_prob", "1.0"], "--class_dropout_prob", "[0, 1)"),
    (["--ddpm_num_steps", "0"], "--ddpm_num_steps", "positive"),
    (["--checkpointing_steps", "0"], "--checkpointing_steps", "positive"),
    (["--checkpoints_total_limit", "0"], "--checkpoints_total_limit", "positive"),
    (["--validation_steps", "0"], "--validation_steps", "positive"),
    (["--max_consecutive_nonfinite_steps", "0"], "--max_consecutive_nonfinite_steps", "positive"),
    (["--mixed_precision", "fp16", "--cpu"], "--mixed_precision", "CUDA"),
    (["--resume_from_checkpoint", "/no/such/checkpoint"], "--resume_from_checkpoint", "does not exist"),
    (["--resume_from_checkpoint", "checkpoint-4"], "--resume_from_checkpoint", "training_state.json"),
    (["--output_dir", "{under_a_file}"], "--output_dir", "cannot be created"),
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


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_dir_is_refused(tmp_path, image_dir, capsys):
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o500)
    with pytest.raises(SystemExit):
        parse_args(["--train_data_dir", str(image_dir), "--output_dir", str(read_only)])
    error = capsys.readouterr().err
    assert "--output_dir" in error and "not writable" in error


def test_good_flags_fill_in_what_follows(image_dir, tmp_path):
    args = parse_args(["--train_data_dir", str(image_dir), "--output_dir", str(tmp_path), "--resolution", "64"])
    assert args.stage == "pretrain" and args.patch_size == 4
    assert (args.prediction_type, args.ddpm_num_steps, args.ddpm_beta_schedule) == ("epsilon", 1000, "linear")
    args = parse_args(["--output_dir", str(tmp_path), "--mask_rate", "0", "--ema_max_decay", "0.99"])
    assert args.stage == "finetune" and args.ema_decay == 0.99


def test_finetuning_takes_the_pretrained_pipeline_settings(folders, tmp_path):
    (folders["no_ema"] / "scheduler").mkdir(exist_ok=True)
    (folders["no_ema"] / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({"prediction_type": "v_prediction", "num_train_timesteps": 500, "beta_schedule": "linear"})
    )
    flags = ["--pretrained_model_name_or_path", str(folders["no_ema"]), "--resolution", "16", "--mask_rate", "0"]
    args = parse_args(flags + ["--output_dir", str(tmp_path)])
    assert (args.prediction_type, args.ddpm_num_steps, args.num_channels) == ("v_prediction", 500, 3)
    args = parse_args(flags + ["--output_dir", str(tmp_path), "--prediction_type", "epsilon"])
    assert args.prediction_type == "epsilon"  # what the user says wins
