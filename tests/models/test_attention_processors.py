"""diffusers' attention processor API on `MaskedDiTModel`: listing, setting, fused q/k/v, slicing."""

import re

import pytest
import torch
from diffusers import DDPMScheduler
from diffusers.models.attention_processor import (
    AttnProcessor,
    AttnProcessor2_0,
    FusedAttnProcessor2_0,
    SlicedAttnProcessor,
)

from diffusers_maskdm import MaskedDDPMPipeline, MaskedDiTModel, MaskGenerator


TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}


def small_model(**overrides):
    torch.manual_seed(0)
    config = {"sample_size": 8, "patch_size": 2, "hidden_size": 32, "num_layers": 3, "num_attention_heads": 4}
    model = MaskedDiTModel(**{**config, **overrides}).eval()
    with torch.no_grad():  # Non-zero biases and outputs, so that a wrong fusion or slice shows.
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model


def outputs(model):
    """A full forward and a forward with half of the tokens dropped, on fixed inputs."""
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 3, 8, 8, generator=generator)
    mask = MaskGenerator("patch", 0.5)(2, 4, generator=generator)
    with torch.no_grad():
        return model(sample, torch.tensor([3, 700])).sample, model(sample, 50, mask=mask).sample


def assert_same_outputs(model, reference):
    for output, expected in zip(outputs(model), reference):
        torch.testing.assert_close(output, expected, **TOLERANCE)


def test_processors_are_listed_and_set_by_name():
    model = small_model()
    processors = model.attn_processors
    assert list(processors) == [f"transformer_blocks.{i}.attn.processor" for i in range(3)]
    assert all(isinstance(p, AttnProcessor2_0) for p in processors.values())
    reference = outputs(model)

    model.set_attn_processor({name: AttnProcessor() for name in processors})
    assert all(isinstance(p, AttnProcessor) for p in model.attn_processors.values())
    assert_same_outputs(model, reference)
    model.set_attn_processor(processors)  # the round trip gives back the very same processors
    assert all(model.attn_processors[name] is processors[name] for name in processors)
    with pytest.raises(ValueError, match="number of processors"):
        model.set_attn_processor({"transformer_blocks.0.attn.processor": AttnProcessor()})


def test_default_processor():
    model = small_model()
    reference = outputs(model)
    model.set_default_attn_processor()
    assert all(type(p) is AttnProcessor for p in model.attn_processors.values())
    assert_same_outputs(model, reference)


@pytest.mark.parametrize("attention_bias", [True, False])
def test_fused_qkv_projections_give_the_same_outputs_and_unfuse_cleanly(attention_bias):
    model = small_model(attention_bias=attention_bias)
    keys = set(model.state_dict())
    reference = outputs(model)

    model.fuse_qkv_projections()
    assert all(isinstance(p, FusedAttnProcessor2_0) for p in model.attn_processors.values())
    assert all(block.attn.fused_projections for block in model.transformer_blocks)
    assert_same_outputs(model, reference)  # with and without dropped tokens

    model.unfuse_qkv_projections()
    assert all(isinstance(p, AttnProcessor2_0) for p in model.attn_processors.values())
    assert set(model.state_dict()) == keys  # the fused copy is gone: saved files are as before
    assert_same_outputs(model, reference)


@pytest.mark.parametrize("slice_size", ["auto", "max", 3])
def test_attention_slicing_works_and_is_undone(slice_size):
    model = small_model()
    reference = outputs(model)
    model.set_attention_slice(slice_size)
    assert all(isinstance(p, SlicedAttnProcessor) for p in model.attn_processors.values())
    assert_same_outputs(model, reference)
    model.set_attention_slice(None)
    assert all(isinstance(p, AttnProcessor2_0) for p in model.attn_processors.values())


@pytest.mark.parametrize("slice_size", [0, 5, "half", 1.5])
def test_attention_slicing_refuses_sizes_it_cannot_take(slice_size):
    with pytest.raises(ValueError, match="slice_size"):
        small_model().set_attention_slice(slice_size)


def test_the_pipelines_attention_slicing_reaches_the_model():
    pipe = MaskedDDPMPipeline(transformer=small_model(), scheduler=DDPMScheduler(num_train_timesteps=10))
    pipe.enable_attention_slicing()
    assert all(p.slice_size == 2 for p in pipe.transformer.attn_processors.values())  # "auto": half of 4 heads
    pipe.disable_attention_slicing()
    assert all(isinstance(p, AttnProcessor2_0) for p in pipe.transformer.attn_processors.values())


def test_processors_that_hold_every_score_say_so_at_4096_tokens(caplog):
    # 256 px at patch 4 is 4,096 tokens: the plain processor holds 12 heads' (tokens x tokens) scores of a sample at
    # once (0.75 GiB), where scaled dot-product attention holds none; slicing to one head holds 0.06 GiB.
    from diffusers.utils import logging as diffusers_logging

    model = MaskedDiTModel(sample_size=256, patch_size=4, hidden_size=48, num_layers=1, num_attention_heads=12)
    diffusers_logging.enable_propagation()
    with caplog.at_level("WARNING"):
        model.set_attention_slice(1)
        assert "attention scores" not in caplog.text
        model.set_default_attn_processor()
    assert re.search(
        r"`set_default_attn_processor` computes 12 heads' 409\d x 409\d attention scores .* 0\.75", caplog.text
    )
