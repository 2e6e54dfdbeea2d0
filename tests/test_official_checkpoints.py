"""Checkpoints of the official MaskDM code: converted, they compute what the official code computes.

The fixtures in tests/fixtures/maskdm_official/ were written by the official code itself
(tests/fixtures/make_official_fixture.py): its checkpoints, and its outputs and samples from them.
"""

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffusers_maskdm import MaskedDDPMPipeline, MaskedDiTModel
from diffusers_maskdm.official_checkpoints import (
    OfficialCheckpointError,
    convert_official_checkpoint,
    convert_official_state_dict,
    infer_official_config,
    load_official_checkpoint,
)
from diffusers_maskdm.training.presets import preset_config


REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "maskdm_official"
SCRIPT = REPO / "scripts" / "convert_maskdm_to_diffusers.py"
TOLERANCE = 1e-5  # fp32
# The fixtures' networks have 2 heads; official ones have width / 64.
HEADS = 2


def load_fixture(name: str):
    reference = torch.load(FIXTURES / f"{name}_reference.pt", weights_only=True)
    return load_official_checkpoint(FIXTURES / f"{name}.pt"), reference


def sample(pipeline, reference) -> torch.Tensor:
    """The official sampler's run of the fixture: DDIM, eta 1, the same noise (the official code draws it from torch's
    global generator seeded with `sample_seed`; a generator seeded alike draws the same)."""
    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(reference["sample_seed"])
    steps = reference["num_inference_steps"]
    return pipeline(batch_size=2, num_inference_steps=steps, eta=1.0, generator=generator, output_type="pt").images


def visible_patches(images: torch.Tensor, mask: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(N, C, H, W) -> the (N, visible, p*p*C) patches, ordered as the official network outputs them."""
    n, c, h, w = images.shape
    patches = images.reshape(n, c, h // patch_size, patch_size, w // patch_size, patch_size)
    patches = patches.permute(0, 2, 4, 3, 5, 1).reshape(n, -1, patch_size * patch_size * c)
    return patches[~mask].reshape(n, -1, patches.shape[-1])


@pytest.mark.parametrize("name", ["maskdm_tiny", "maskdm_tiny_classes"])
def test_converted_checkpoints_compute_what_the_official_code_computes(name):
    checkpoint, reference = load_fixture(name)
    pipeline, raw = convert_official_checkpoint(checkpoint, num_attention_heads=HEADS)
    ema = pipeline.transformer
    inputs, timesteps, labels = reference["inputs"], reference["timesteps"], reference["class_labels"]
    with torch.no_grad():
        assert (ema(inputs, timesteps, class_labels=labels).sample - reference["ema"]).abs().max() <= TOLERANCE
        assert (raw(inputs, timesteps, class_labels=labels).sample - reference["raw"]).abs().max() <= TOLERANCE
        masked = ema(inputs, timesteps, class_labels=labels, mask=reference["mask"]).sample
        visible = visible_patches(masked, reference["mask"], ema.config.patch_size)
        assert (visible - reference["ema_masked"]).abs().max() <= TOLERANCE
        if labels is not None:  # no labels: the null class is the official unconditional embedding
            assert (ema(inputs, timesteps).sample - reference["ema_null_class"]).abs().max() <= TOLERANCE
    assert (reference["raw"] - reference["ema"]).abs().max() > 0.1  # the two sets of weights are told apart
    assert reference["mask"].float().mean() == 0.875  # 90 %, floored to whole blocks (or patches) as officially
    assert (sample(pipeline, reference) - reference["samples"]).abs().max() <= TOLERANCE


def test_the_layer_norm_eps_is_part_of_the_match_and_survives_saving(tmp_path):
    checkpoint, reference = load_fixture("maskdm_tiny")
    pipeline, _ = convert_official_checkpoint(checkpoint, num_attention_heads=HEADS)
    pipeline.save_pretrained(tmp_path)
    loaded = MaskedDDPMPipeline.from_pretrained(tmp_path)
    assert loaded.transformer.config.norm_eps == 1e-5
    assert torch.equal(sample(loaded, reference), sample(pipeline, reference))
    # This package's default eps (1e-6) would not match: the fixture is sensitive to it.
    config = {**pipeline.transformer.config, "norm_eps": 1e-6}
    other = MaskedDiTModel.from_config(config)
    other.load_state_dict(pipeline.transformer.state_dict())
    with torch.no_grad():
        output = other(reference["inputs"], reference["timesteps"]).sample
    assert (output - reference["ema"]).abs().max() > 10 * TOLERANCE


def official_network_shapes(width: int, depth: int, patch_size: int, size: int) -> dict[str, torch.Tensor]:
    """Meta tensors named and shaped as the state dict of the official `MaskedUViT(img_size=size, patch_size,
    encoder_embed_dim=width, encoder_depth=depth)` (unconditional, no q/k/v bias, no time MLP)."""
    pixels = patch_size * patch_size * 3
    shapes = {
        "encoder.patch_embed.proj.weight": (width, 3, patch_size, patch_size),
        "encoder.patch_embed.proj.bias": (width,),
        "encoder.encoder_pos_embed": (1, 1 + (size // patch_size) ** 2, width),
        "encoder.norm.weight": (width,),
        "encoder.norm.bias": (width,),
        "encoder_to_output.weight": (pixels, width),
        "encoder_to_output.bias": (pixels,),
    }
    blocks = [f"in_blocks.{i}" for i in range(depth // 2)] + ["mid_block"]
    blocks += [f"out_blocks.{i}" for i in range(depth // 2)]
    for block in blocks:
        prefix = f"encoder.{block}."
        for norm in ("norm1", "norm2"):
            shapes.update({f"{prefix}{norm}.weight": (width,), f"{prefix}{norm}.bias": (width,)})
        shapes.update({f"{prefix}attn.qkv.weight": (3 * width, width), f"{prefix}attn.proj.weight": (width, width)})
        shapes.update({f"{prefix}mlp.fc1.weight": (4 * width, width), f"{prefix}mlp.fc2.weight": (width, 4 * width)})
        shapes.update({f"{prefix}attn.proj.bias": (width,), f"{prefix}mlp.fc1.bias": (4 * width,)})
        shapes[f"{prefix}mlp.fc2.bias"] = (width,)
        if block.startswith("out_blocks"):
            shapes.update({f"{prefix}skip_linear.weight": (width, 2 * width), f"{prefix}skip_linear.bias": (width,)})
    return {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}


@pytest.mark.parametrize(
    "preset, width, depth, size, count",
    [
        ("maskdm-celeba-64", 512, 12, 64, 44_292_144),
        ("maskdm-celebahq-256", 768, 12, 256, 102_417_456),
        ("maskdm-small-256", 512, 13, 256, 46_258_224),
    ],
)
def test_the_official_networks_are_read_into_the_official_presets(preset, width, depth, size, count):
    official = official_network_shapes(width, depth, 4, size)
    assert sum(tensor.numel() for tensor in official.values()) == count  # the official parameter counts
    config = infer_official_config(official)  # 8 or 12 heads: width / 64
    assert config == {**preset_config(preset, size), "out_channels": None}
    with torch.device("meta"):
        model = MaskedDiTModel(**config)
    converted = convert_official_state_dict(official, config)
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in model.state_dict().items()}


@pytest.mark.parametrize("steps", [4, 250, 500])
def test_the_scheduler_takes_the_official_sampler_timesteps(steps):
    checkpoint, _ = load_fixture("maskdm_tiny")
    scheduler = convert_official_checkpoint(checkpoint, num_attention_heads=HEADS)[0].scheduler
    scheduler.set_timesteps(steps)
    # The official DDIM sampler steps through int(linspace(-1, T - 1, steps + 1)), from T - 1 down to -1 (x0).
    official = torch.linspace(-1, 999, steps + 1).int().flip(0)[:-1]
    assert torch.equal(scheduler.timesteps, official.long())


def load_script():
    spec = importlib.util.spec_from_file_location("convert_maskdm_to_diffusers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_writes_a_pipeline_with_the_ema_and_the_raw_weights(tmp_path):
    # (tests/training/test_official_finetune.py fine-tunes such a folder with the training script.)
    out = tmp_path / "out"
    flags = ["--checkpoint_path", str(FIXTURES / "maskdm_tiny.pt"), "--dump_path", str(out), "--num_attention_heads"]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *flags, str(HEADS)], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    pipeline = MaskedDDPMPipeline.from_pretrained(out)
    _, reference = load_fixture("maskdm_tiny")
    assert (sample(pipeline, reference) - reference["samples"]).abs().max() <= TOLERANCE  # the EMA weights
    raw = MaskedDiTModel.from_pretrained(out / "transformer", variant="non_ema")
    with torch.no_grad():
        assert (raw(reference["inputs"], reference["timesteps"]).sample - reference["raw"]).abs().max() <= TOLERANCE
    card = (out / "README.md").read_text()
    assert "## Conversion" in card and "arxiv.org/abs/2306.11363" in card and "license: mit" in card
    assert str(tmp_path) not in card  # a local path is never written into a card


def test_the_script_downloads_from_the_hub(tmp_path, monkeypatch):
    script = load_script()
    calls = []

    def fake_download(repo_id, filename, revision=None):
        calls.append((repo_id, filename, revision))
        return str(FIXTURES / "maskdm_tiny.pt")

    monkeypatch.setattr(script, "hf_hub_download", fake_download)
    filename = "pretrain/pretrain_celebahq_m90block4_20.pt"
    flags = ["--repo_id", "jiachenlei/maskdm", "--filename", filename, "--dump_path", str(tmp_path / "out")]
    script.main([*flags, "--num_attention_heads", str(HEADS)])
    assert calls == [("jiachenlei/maskdm", filename, None)]
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"https://huggingface.co/jiachenlei/maskdm/blob/main/{filename}" in card
    assert "CelebA-HQ 256x256" in card and "masked pre-training" in card and "90%" in card


def write_bad_checkpoints(folder: Path) -> dict[str, tuple[Path, str]]:
    """Files the converter refuses, and the words of its refusal."""
    good = (FIXTURES / "maskdm_tiny_classes.pt").read_bytes()
    (folder / "truncated.pt").write_bytes(good[: len(good) // 2])
    torch.save({"model": {"model.encoder.x": torch.zeros(1)}, "args": argparse.Namespace(lr=1)}, folder / "pickled.pt")
    dwt = {"model.encoder.approx_patch_embed.proj.weight": torch.zeros(1), "betas": torch.zeros(1)}
    torch.save({"step": 1, "model": dwt, "ema": {}}, folder / "dwt.pt")
    torch.save({"state_dict": {"encoder.patch_embed.proj.weight": torch.zeros(1)}}, folder / "other.pt")
    return {
        "truncated": (folder / "truncated.pt", "cannot be read as a PyTorch checkpoint"),
        "pickled": (folder / "pickled.pt", "pickled Python object (argparse.Namespace)"),
        "dwt": (folder / "dwt.pt", "MaskDM-L (DWT)"),
        "other": (folder / "other.pt", "does not hold the official MaskDM network"),
    }


def test_files_that_are_no_official_checkpoint_are_refused_in_one_line(tmp_path):
    script = load_script()
    for name, (path, words) in write_bad_checkpoints(tmp_path).items():
        with pytest.raises(OfficialCheckpointError, match=re.escape(words)) as error:
            script.main(["--checkpoint_path", str(path), "--dump_path", str(tmp_path / name)])
        assert "\n" not in str(error.value), name
        assert not (tmp_path / name).exists()
    # From the command line: one line on stderr, a non-zero exit, no traceback.
    flags = ["--checkpoint_path", str(tmp_path / "pickled.pt"), "--dump_path", str(tmp_path / "out")]
    result = subprocess.run([sys.executable, str(SCRIPT), *flags], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "pickled Python object" in result.stderr
