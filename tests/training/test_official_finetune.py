"""The training script fine-tunes a pipeline converted from an official MaskDM checkpoint."""

import subprocess
import sys
from pathlib import Path

from script_runner import REPO, assert_ok, base_args, run_script

from diffusers_maskdm import MaskedDDPMPipeline


def test_a_converted_official_checkpoint_fine_tunes_from_its_raw_weights(image_dir, tmp_path):
    converted = tmp_path / "converted"
    fixture = REPO / "tests" / "fixtures" / "maskdm_official" / "maskdm_tiny.pt"  # 32 px, 2 heads
    command = [sys.executable, str(REPO / "scripts" / "convert_maskdm_to_diffusers.py"), "--checkpoint_path"]
    command += [str(fixture), "--dump_path", str(converted), "--num_attention_heads", "2"]
    assert_ok(subprocess.run(command, capture_output=True, text=True, cwd=REPO))
    assert MaskedDDPMPipeline.from_pretrained(converted)(num_inference_steps=2, eta=1.0).images[0].size == (32, 32)

    args = base_args(image_dir, Path("unused"), tmp_path / "finetuned")
    args = [arg for arg in args if arg not in ("--model_config", "unused")]  # the model comes from the folder
    args[args.index("--resolution") + 1] = "32"  # the converted model's
    args += ["--pretrained_model_name_or_path", str(converted), "--mask_rate", "0", "--max_train_steps", "2"]
    result = run_script(args)
    assert_ok(result)
    assert "Starting from the raw weights" in result.stdout + result.stderr
    config = MaskedDDPMPipeline.from_pretrained(tmp_path / "finetuned").transformer.config
    assert config.norm_eps == 1e-5 and config.hidden_size == 8 and config.sample_size == 32
