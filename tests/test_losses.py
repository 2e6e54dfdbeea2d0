import pytest
import torch

from diffusers_maskdm import MaskGenerator, masked_mse_loss


def test_without_mask_it_is_the_ordinary_mse():
    pred, target = torch.randn(3, 3, 8, 8), torch.randn(3, 3, 8, 8)
    assert torch.allclose(masked_mse_loss(pred, target, None, 2), torch.nn.functional.mse_loss(pred, target))


def test_only_visible_pixels_count():
    target = torch.zeros(2, 1, 4, 4)
    pred = torch.zeros(2, 1, 4, 4)
    mask = torch.tensor([[True, False, False, False], [False, False, False, True]])
    pred[0, :, :2, :2] = 100.0  # under the masked patch of sample 0: ignored
    pred[1, :, :2, :2] = 1.0  # a visible patch of sample 1: 4 of its 12 visible pixels have error 1
    assert masked_mse_loss(pred, target, mask, 2).item() == pytest.approx((0.0 + 4 / 12) / 2)
    assert masked_mse_loss(pred, target, mask, 2, reduction="none").tolist() == pytest.approx([0.0, 4 / 12])


def test_masked_pixels_get_zero_gradient():
    pred = torch.randn(4, 3, 8, 8, requires_grad=True)
    mask = MaskGenerator("block", 0.5, block_size=2)(4, 4, generator=torch.Generator().manual_seed(0))
    masked_mse_loss(pred, torch.randn(4, 3, 8, 8), mask, 2).backward()
    pixel_masked = mask.view(4, 1, 4, 1, 4, 1).expand(-1, 3, -1, 2, -1, 2).reshape(4, 3, 8, 8)
    assert torch.all(pred.grad[pixel_masked] == 0)
    assert torch.all(pred.grad[~pixel_masked] != 0)


def test_every_sample_weighs_the_same():
    # Same per-pixel error everywhere: the loss must not depend on which mask each sample drew.
    pred, target = torch.ones(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)
    mask = MaskGenerator("crop", 0.75)(2, 4, generator=torch.Generator().manual_seed(0))
    assert masked_mse_loss(pred, target, mask, 2).item() == pytest.approx(1.0)


def test_the_mask_is_trusted_not_rechecked():
    # The model checks a mask's row counts when it drops tokens; the loss reads no count (no device sync), so rows
    # hiding different numbers of patches are each averaged over their own visible pixels.
    pred, target = torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    pred[:, :, 2:, 2:] = 1.0  # the last patch of each sample: visible in both rows
    mask = torch.tensor([[True, True, True, False], [False, False, False, False]])
    assert masked_mse_loss(pred, target, mask, 2, reduction="none").tolist() == pytest.approx([1.0, 0.25])


def test_half_precision_inputs_give_a_float32_loss():
    pred = torch.randn(2, 3, 8, 8).bfloat16()
    assert masked_mse_loss(pred, torch.zeros_like(pred), None, 2).dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"target": torch.zeros(2, 3, 4, 4)}, "same shape"),
        ({"mask": torch.zeros(2, 5, dtype=torch.bool)}, "shape"),
        ({"mask": torch.zeros(2, 16)}, "bool"),
        ({"patch_size": 3}, "patch_size"),
        ({"reduction": "sum"}, "reduction"),
    ],
)
def test_bad_input_is_refused(kwargs, match):
    args = {
        "pred": torch.zeros(2, 3, 8, 8),
        "target": torch.zeros(2, 3, 8, 8),
        "mask": torch.zeros(2, 16, dtype=torch.bool),
        "patch_size": 2,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        masked_mse_loss(**args)
