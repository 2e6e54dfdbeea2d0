import pytest
import torch

from diffusers_maskdm import MaskedDiTModel, MaskGenerator
from diffusers_maskdm.flops import training_step_flops


def test_flops_follow_the_visible_tokens():
    torch.manual_seed(0)
    model = MaskedDiTModel(sample_size=16, patch_size=2, hidden_size=64, num_layers=2, num_attention_heads=2)
    full = training_step_flops(model, 4)
    half = training_step_flops(model, 4, MaskGenerator("block", 0.5))
    most = training_step_flops(model, 4, MaskGenerator("block", 0.9))
    assert full > 0
    # Linear layers dominate, so compute scales with the kept share (plus the condition token).
    assert 0.45 < half / full < 0.55
    assert 0.05 < most / full < 0.2
    assert training_step_flops(model, 8) == pytest.approx(2 * full, rel=1e-6)
    assert all(p.grad is None for p in model.parameters())


def test_bad_batch_size_is_refused():
    with pytest.raises(ValueError, match="batch_size"):
        training_step_flops(MaskedDiTModel(sample_size=8, hidden_size=32, num_layers=1, num_attention_heads=2), 0)


def analytic_step_flops(model: MaskedDiTModel, batch_size: int, visible: int) -> int:
    """Matrix products and attention of one training step of a U-ViT `MaskedDiTModel`, written out by hand."""
    config = model.config
    width, pixels = config.hidden_size, config.in_channels * config.patch_size**2
    tokens = visible + model.num_condition_tokens
    per_token = (4 + 2 * config.mlp_ratio) * width**2 * config.num_layers  # q, k, v, out and the MLP of each block
    per_token += len(model.skip_projections) * 2 * width**2
    linear = tokens * per_token + visible * width * pixels  # + the output projection
    time_mlp = 8 * width**2  # the timestep embedding's two layers, once per image
    attention = 2 * tokens**2 * width * config.num_layers  # Q K^T and softmax(.) V
    patch_embed = model.num_patches * pixels * width  # on every patch, before the masked ones are dropped
    # 2 FLOPs a multiply-add. The backward pass of a matrix product costs twice its forward (3x in all), except the
    # patch embedding's (the image needs no gradient: 2x); attention's backward recomputes the scores, as fused
    # kernels do and as torch counts them: 5 products for the forward's 2 (3.5x in all).
    return int(batch_size * 2 * (3 * (linear + time_mlp) + 3.5 * attention + 2 * patch_embed))


@pytest.mark.parametrize(
    "config",
    [
        dict(sample_size=32, patch_size=2, hidden_size=128, num_layers=5, num_attention_heads=4),  # the tiny preset
        dict(sample_size=32, patch_size=2, hidden_size=256, num_layers=7, num_attention_heads=4),  # the reference
        dict(sample_size=64, patch_size=4, hidden_size=64, num_layers=4, num_attention_heads=2, mlp_ratio=2.0),
    ],
)
@pytest.mark.parametrize("mask_rate", [0.0, 0.9])
def test_counted_flops_match_the_analytic_count_with_attention(config, mask_rate):
    torch.manual_seed(0)
    model = MaskedDiTModel(**config)
    masks = MaskGenerator("block", mask_rate, block_size=2) if mask_rate else None
    visible = model.num_patches
    if masks is not None:
        visible -= int(masks(1, model.grid_size).sum())
    counted = training_step_flops(model, 2, masks)
    assert counted == pytest.approx(analytic_step_flops(model, 2, visible), rel=0.02)
