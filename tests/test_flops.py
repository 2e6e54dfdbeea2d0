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
