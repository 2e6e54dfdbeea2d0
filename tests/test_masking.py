import pytest
import torch

from diffusers_maskdm import MaskGenerator, draw_masks
from diffusers_maskdm.masking import patch_mask_to_pixel_mask, visible_indices


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "kind, rate, kwargs, grid",
    [
        ("patch", 0.9, {}, 16),
        ("patch", 0.5, {}, 8),
        ("block", 0.9, {"block_size": 2}, 16),
        ("block", 0.5, {"block_size": 4}, 16),
        ("crop", 0.75, {}, 16),
        ("crop", 0.86, {"crop_size": 3}, 8),
    ],
)
def test_every_row_hides_the_announced_number_of_patches(kind, rate, kwargs, grid):
    gen = MaskGenerator(kind, rate, **kwargs)
    mask = gen(32, grid, generator=seeded())
    assert mask.shape == (32, grid * grid) and mask.dtype == torch.bool
    assert mask.sum(dim=1).tolist() == [gen.num_masked(grid)] * 32
    assert gen.achieved_mask_rate(grid) == pytest.approx(gen.num_masked(grid) / grid**2)
    assert abs(gen.achieved_mask_rate(grid) - rate) < 0.15


def test_patch_rate_is_exact_when_it_can_be():
    assert MaskGenerator("patch", 0.9).achieved_mask_rate(10) == pytest.approx(0.9)
    # Blocks of 2x2 on an 8x8 grid: 16 blocks, 90 % of 16 rounds to 14 blocks.
    assert MaskGenerator("block", 0.9, block_size=2).achieved_mask_rate(8) == pytest.approx(14 / 16)


@pytest.mark.parametrize(
    "kind, rate, block_size, grid, nearest, floor",
    [
        # The official code floors the patch count, then keeps the whole blocks that fit in it.
        ("block", 0.9, 2, 16, 58 * 4, 57 * 4),
        ("block", 0.9, 8, 16, None, 3 * 64),  # nearest hides all 4 blocks (refused); floor hides 3, 75 %
        ("block", 0.9, 4, 16, 14 * 16, 14 * 16),
        ("patch", 0.9, 2, 16, 230, 230),
        ("patch", 0.5, 2, 5, 12, 12),  # 12.5: nearest rounds half to even
        ("patch", 0.55, 2, 5, 14, 13),
        ("crop", 0.9, 2, 16, 256 - 5 * 5, 256 - 6 * 6),  # floor keeps at least 10 % visible: a 6x6 window
    ],
)
def test_rounding_of_the_masked_count(kind, rate, block_size, grid, nearest, floor):
    floored = MaskGenerator(kind, rate, block_size=block_size, rounding="floor")
    assert floored.num_masked(grid) == floor
    assert floored.num_masked(grid) <= rate * grid**2
    assert floored(4, grid, generator=seeded()).sum(dim=1).tolist() == [floor] * 4
    rounded = MaskGenerator(kind, rate, block_size=block_size)
    if nearest is None:
        with pytest.raises(ValueError, match="hides every patch"):
            rounded.validate(grid)
    else:
        assert rounded.num_masked(grid) == nearest


def test_rounding_is_checked_and_shown():
    with pytest.raises(ValueError, match="`rounding` must be one of"):
        MaskGenerator("block", 0.9, rounding="ceil")
    assert "rounding='floor'" in repr(MaskGenerator("block", 0.9, rounding="floor"))


@pytest.mark.parametrize("kind", ["patch", "block", "crop"])
def test_same_seed_same_masks_other_seed_other_masks(kind):
    gen = MaskGenerator(kind, 0.75)
    assert torch.equal(gen(8, 16, generator=seeded(1)), gen(8, 16, generator=seeded(1)))
    assert not torch.equal(gen(8, 16, generator=seeded(1)), gen(8, 16, generator=seeded(2)))


@pytest.mark.parametrize("kind", ["patch", "block", "crop"])
def test_rows_differ_within_a_batch(kind):
    mask = MaskGenerator(kind, 0.75)(16, 16, generator=seeded())
    assert len({tuple(row.tolist()) for row in mask}) > 1


def test_block_masks_are_made_of_whole_blocks():
    mask = MaskGenerator("block", 0.7, block_size=4)(8, 16, generator=seeded()).view(8, 4, 4, 4, 4)
    # Inside each 4x4 block every patch has the same state.
    per_block = mask.permute(0, 1, 3, 2, 4).reshape(8, 16, 16)
    assert torch.all(per_block.all(dim=-1) | (~per_block).all(dim=-1))


def test_crop_leaves_one_visible_square():
    mask = MaskGenerator("crop", 0.5, crop_size=3)(16, 8, generator=seeded()).view(16, 8, 8)
    for row in ~mask:
        rows, cols = row.nonzero(as_tuple=True)
        assert rows.max() - rows.min() == 2 and cols.max() - cols.min() == 2 and row.sum() == 9


def test_zero_rate_masks_nothing():
    assert not MaskGenerator("block", 0.0)(4, 8).any()


def test_patch_masks_are_uniform_over_positions():
    mask = MaskGenerator("patch", 0.5)(4000, 4, generator=seeded())
    frequency = mask.float().mean(dim=0)
    assert torch.allclose(frequency, torch.full_like(frequency, 0.5), atol=0.05)


def test_visible_indices_are_the_unmasked_patches_in_order():
    mask = torch.tensor([[True, False, True, False], [False, False, True, True]])
    assert visible_indices(mask).tolist() == [[1, 3], [0, 1]]


def test_pixel_mask_and_drawing():
    mask = torch.tensor([[True, False, False, False]])
    pixel = patch_mask_to_pixel_mask(mask, patch_size=2)
    assert pixel.shape == (1, 1, 4, 4) and pixel[0, 0, :2, :2].all() and pixel.sum() == 4
    drawn = draw_masks(torch.ones(1, 3, 4, 4), mask, patch_size=2, fill=0.0)
    assert drawn[0, :, :2, :2].eq(0).all() and drawn[0, :, 2:, :].eq(1).all()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: MaskGenerator("stripes"), "kind"),
        (lambda: MaskGenerator("patch", 1.0), "mask_rate"),
        (lambda: MaskGenerator("patch", -0.1), "mask_rate"),
        (lambda: MaskGenerator("block", 0.5, block_size=0), "block_size"),
        (lambda: MaskGenerator("block", 0.5, block_size=3)(2, 16), "block_size"),
        (lambda: MaskGenerator("crop", 0.5, crop_size=9)(2, 8), "crop_size"),
        (lambda: MaskGenerator("patch", 0.99)(2, 4), "every patch"),
        (lambda: MaskGenerator("patch", 0.5)(0, 4), "batch_size"),
    ],
)
def test_bad_input_is_refused_with_the_argument_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()
