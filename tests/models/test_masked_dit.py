import json
import os

import pytest
import torch
from diffusers import DDPMScheduler

from diffusers_maskdm import MaskedDiTModel, MaskGenerator, masked_mse_loss
from diffusers_maskdm.masking import visible_indices


TINY = {"sample_size": 8, "patch_size": 2, "hidden_size": 32, "num_layers": 3, "num_attention_heads": 2}


def tiny_model(seed=0, randomize=True, **overrides):
    torch.manual_seed(seed)
    model = MaskedDiTModel(**{**TINY, **overrides})
    if randomize:
        # adaLN-Zero starts every branch (and the output) at zero; random weights make the checks below meaningful.
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn_like(param) * 0.1)
    return model.eval()


def block_mask(batch, rate=0.5, seed=0, grid=4):
    return MaskGenerator("block", rate, block_size=2)(batch, grid, generator=torch.Generator().manual_seed(seed))


def pixel_view(mask, patch_size=2, grid=4):
    return (
        mask.view(-1, 1, grid, 1, grid, 1)
        .expand(-1, -1, -1, patch_size, -1, patch_size)
        .reshape(mask.shape[0], 1, grid * patch_size, grid * patch_size)
    )


@pytest.mark.parametrize("time_conditioning", ["token", "adaln"])
@pytest.mark.parametrize("position_embedding_type", ["learned", "sincos", "none"])
@pytest.mark.parametrize("num_class_embeds", [None, 5])
def test_output_shape_with_and_without_mask(time_conditioning, position_embedding_type, num_class_embeds):
    model = tiny_model(
        time_conditioning=time_conditioning,
        position_embedding_type=position_embedding_type,
        num_class_embeds=num_class_embeds,
    )
    sample = torch.randn(4, 3, 8, 8)
    labels = torch.tensor([0, 1, 4, 5]) if num_class_embeds else None
    full = model(sample, torch.tensor([1, 10, 100, 999]), class_labels=labels).sample
    mask = block_mask(4)
    masked = model(sample, 10, class_labels=labels, mask=mask).sample
    assert full.shape == masked.shape == (4, 3, 8, 8)
    assert torch.all(masked[pixel_view(mask).expand_as(masked)] == 0)
    assert torch.all(masked[~pixel_view(mask).expand_as(masked)] != 0)


def test_grayscale_and_other_output_channels():
    model = tiny_model(in_channels=1, out_channels=2)
    assert model(torch.randn(2, 1, 8, 8), 5).sample.shape == (2, 2, 8, 8)


@pytest.mark.parametrize("timestep", [7, 7.0, torch.tensor(7), torch.tensor([7]), torch.tensor([7, 7, 7])])
def test_timestep_forms_agree(timestep):
    model = tiny_model()
    sample = torch.randn(3, 3, 8, 8)
    expected = model(sample, torch.tensor([7, 7, 7])).sample
    assert torch.allclose(model(sample, timestep).sample, expected, atol=1e-6)


def test_return_dict_false_gives_a_tuple():
    model = tiny_model()
    out = model(torch.randn(1, 3, 8, 8), 1, return_dict=False)
    assert isinstance(out, tuple) and out[0].shape == (1, 3, 8, 8)


@pytest.mark.parametrize("time_conditioning", ["token", "adaln"])
def test_masked_pixels_do_not_change_visible_output(time_conditioning):
    model = tiny_model(time_conditioning=time_conditioning)
    mask = block_mask(2)
    sample = torch.randn(2, 3, 8, 8)
    other = torch.where(pixel_view(mask), torch.randn_like(sample) * 10, sample)
    assert not torch.equal(sample, other)
    assert torch.equal(model(sample, 3, mask=mask).sample, model(other, 3, mask=mask).sample)
    # Without the mask those pixels do matter: the check above is not vacuous.
    assert not torch.allclose(model(sample, 3).sample, model(other, 3).sample)


@pytest.mark.parametrize("time_conditioning, extra_tokens", [("token", 1), ("adaln", 0)])
def test_masked_tokens_never_enter_the_transformer(time_conditioning, extra_tokens):
    model = tiny_model(time_conditioning=time_conditioning)
    lengths = []
    for block in model.transformer_blocks:
        block.register_forward_hook(lambda module, args, out: lengths.append(out.shape[1]))
    model(torch.randn(2, 3, 8, 8), 3, mask=block_mask(2, rate=0.75))
    assert lengths == [4 + extra_tokens] * 3  # 4 of 16 patches visible
    lengths.clear()
    model(torch.randn(2, 3, 8, 8), 3)
    assert lengths == [16 + extra_tokens] * 3


def test_visible_output_depends_on_position_only_through_the_position_embedding():
    # With no position information the transformer is permutation-equivariant over tokens: two masks that keep the
    # same pixel content at different places give the same predictions, moved with the content.
    model = tiny_model(position_embedding_type="none")
    sample = torch.randn(1, 3, 8, 8)
    shifted = torch.roll(sample, shifts=(4, 4), dims=(2, 3))
    mask = torch.ones(1, 16, dtype=torch.bool)
    mask[0, [0, 1, 4, 5]] = False  # top-left 2x2 patches visible
    shifted_mask = torch.ones(1, 16, dtype=torch.bool)
    shifted_mask[0, [10, 11, 14, 15]] = False  # bottom-right 2x2 patches visible
    out = model(sample, 5, mask=mask).sample
    out_shifted = model(shifted, 5, mask=shifted_mask).sample
    assert torch.allclose(out[..., :4, :4], out_shifted[..., 4:, 4:], atol=1e-5)
    # With learned positions the same experiment must differ.
    learned = tiny_model(position_embedding_type="learned")
    assert not torch.allclose(
        learned(sample, 5, mask=mask).sample[..., :4, :4],
        learned(shifted, 5, mask=shifted_mask).sample[..., 4:, 4:],
        atol=1e-5,
    )


def test_class_labels_default_to_the_null_class():
    model = tiny_model(num_class_embeds=3)
    sample = torch.randn(2, 3, 8, 8)
    assert model.null_class_label == 3
    assert torch.equal(model(sample, 1).sample, model(sample, 1, class_labels=torch.tensor([3, 3])).sample)
    assert not torch.allclose(model(sample, 1).sample, model(sample, 1, class_labels=torch.tensor([0, 1])).sample)


@pytest.mark.parametrize("time_conditioning", ["token", "adaln"])
def test_save_and_load_give_identical_outputs(tmp_path, time_conditioning):
    model = tiny_model(time_conditioning=time_conditioning, num_class_embeds=2)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    loaded = MaskedDiTModel.from_pretrained(tmp_path).eval()
    sample, mask = torch.randn(2, 3, 8, 8), block_mask(2)
    assert torch.equal(model(sample, 4, mask=mask).sample, loaded(sample, 4, mask=mask).sample)
    assert torch.equal(model(sample, 4).sample, loaded(sample, 4).sample)


def test_sincos_table_is_rebuilt_not_saved(tmp_path):
    model = tiny_model(position_embedding_type="sincos")
    model.save_pretrained(tmp_path)
    from safetensors.torch import load_file

    assert "pos_embed" not in load_file(tmp_path / "diffusion_pytorch_model.safetensors")
    loaded = MaskedDiTModel.from_pretrained(tmp_path)
    assert torch.equal(loaded.pos_embed, model.pos_embed)


def test_masked_pretrained_checkpoint_fine_tunes_on_full_images(tmp_path):
    model = tiny_model().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(4, 3, 8, 8)
    for step in range(3):  # a few masked pre-training steps
        mask = block_mask(4, rate=0.75, seed=step)
        masked_mse_loss(model(images, 10, mask=mask).sample, images, mask, 2).backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(tmp_path)
    loaded = MaskedDiTModel.from_pretrained(tmp_path).train()
    loss = masked_mse_loss(loaded(images, 10).sample, images, None, 2)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in loaded.parameters() if p.requires_grad)


def test_gradient_checkpointing_gives_the_same_gradients():
    sample, mask = torch.randn(2, 3, 8, 8), block_mask(2)
    grads = []
    for checkpointing in (False, True):
        model = tiny_model().train()
        if checkpointing:
            model.enable_gradient_checkpointing()
        model(sample, 3, mask=mask).sample.square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_forward(dtype):
    model = tiny_model().to(dtype)
    out = model(torch.randn(2, 3, 8, 8, dtype=dtype), torch.tensor([999, 1]), mask=block_mask(2)).sample
    assert out.dtype == dtype and torch.isfinite(out).all()


def test_a_tiny_model_learns_to_denoise_a_few_images():
    torch.manual_seed(0)
    model = MaskedDiTModel(**{**TINY, "num_layers": 2}).train()
    scheduler = DDPMScheduler(num_train_timesteps=100)
    images = torch.rand(4, 3, 8, 8) * 2 - 1
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    mask_generator = MaskGenerator("patch", 0.5)

    def loss_at(step_model, mask):
        g = torch.Generator().manual_seed(123)
        noise = torch.randn(images.shape, generator=g)
        timesteps = torch.randint(0, 100, (4,), generator=g)
        noisy = scheduler.add_noise(images, noise, timesteps)
        return masked_mse_loss(step_model(noisy, timesteps, mask=mask).sample, noise, mask, 2)

    with torch.no_grad():
        start = loss_at(model, None).item()
    for _ in range(300):
        mask = mask_generator(4, 4, generator=generator)
        noise = torch.randn(images.shape, generator=generator)
        timesteps = torch.randint(0, 100, (4,), generator=generator)
        noisy = scheduler.add_noise(images, noise, timesteps)
        loss = masked_mse_loss(model(noisy, timesteps, mask=mask).sample, noise, mask, 2)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        end = loss_at(model, None).item()
    # Masked training alone must teach the full-image denoiser.
    assert end < 0.5 * start, (start, end)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m(torch.randn(2, 1, 8, 8), 1), "channels"),
        (lambda m: m(torch.randn(2, 3, 16, 16), 1), "sample_size"),
        (lambda m: m(torch.randn(3, 8, 8), 1), "sample"),
        (lambda m: m(torch.randn(2, 3, 8, 8), torch.tensor([1, 2, 3])), "timestep"),
        (lambda m: m(torch.randn(2, 3, 8, 8), "1"), "timestep"),
        (lambda m: m(torch.randn(2, 3, 8, 8), 1, class_labels=torch.tensor([0, 1])), "unconditional"),
        (lambda m: m(torch.randn(2, 3, 8, 8), 1, mask=torch.zeros(2, 15, dtype=torch.bool)), "shape"),
        (lambda m: m(torch.randn(2, 3, 8, 8), 1, mask=torch.zeros(2, 16)), "bool"),
        (
            lambda m: m(torch.randn(2, 3, 8, 8), 1, mask=torch.tensor([[True] + [False] * 15, [False] * 16])),
            "same number",
        ),
        (lambda m: m(torch.randn(2, 3, 8, 8), 1, mask=torch.ones(2, 16, dtype=torch.bool)), "every patch"),
    ],
)
def test_bad_forward_input_is_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call(tiny_model(randomize=False))


@pytest.mark.parametrize("labels", [torch.tensor([0, 4]), torch.tensor([-1, 0]), torch.tensor([0.5, 1.0])])
def test_bad_class_labels_are_refused(labels):
    with pytest.raises(ValueError, match="class_labels"):
        tiny_model(randomize=False, num_class_embeds=3)(torch.randn(2, 3, 8, 8), 1, class_labels=labels)


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"sample_size": 9}, "patch_size"),
        ({"hidden_size": 30, "num_attention_heads": 4}, "num_attention_heads"),
        ({"position_embedding_type": "rope"}, "position_embedding_type"),
        ({"time_conditioning": "film"}, "time_conditioning"),
        ({"num_layers": 0}, "num_layers"),
        ({"hidden_size": -32}, "hidden_size"),
        ({"mlp_ratio": "4"}, "mlp_ratio"),
        ({"num_class_embeds": 0}, "num_class_embeds"),
        # Sizes that would allocate gigabytes to terabytes before any weight is read.
        ({"hidden_size": 10**9, "num_attention_heads": 1}, "hidden_size"),
        ({"num_class_embeds": 10**10}, "num_class_embeds"),
        ({"sample_size": 65536, "patch_size": 1}, "sample_size"),
        ({"mlp_ratio": 1e30}, "mlp_ratio"),
    ],
)
def test_bad_config_is_refused_naming_the_key(overrides, key):
    with pytest.raises(ValueError, match=key):
        MaskedDiTModel(**{**TINY, **overrides})


def test_a_tampered_config_file_is_refused_naming_the_key(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["hidden_size"] = -8
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="hidden_size"):
        MaskedDiTModel.from_pretrained(tmp_path)


def test_weights_that_lack_a_tensor_are_refused_naming_it(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    tiny_model().save_pretrained(tmp_path)
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    with safe_open(str(path), framework="pt") as weights:
        metadata = weights.metadata()
    tensors = load_file(path)
    del tensors["proj_out.weight"]
    save_file(tensors, str(path), metadata)
    # diffusers would leave it on the `meta` device, saying only "newly initialized".
    with pytest.raises(ValueError, match=r"lack proj_out\.weight .*Fix: load the complete folder"):
        MaskedDiTModel.from_pretrained(tmp_path)


def test_saved_weights_are_readable_as_the_umask_allows(tmp_path):
    # safetensors creates its files 0600: a model or cache shared by a team would be unreadable to all but its writer.
    previous = os.umask(0o022)
    try:
        tiny_model().save_pretrained(tmp_path)
    finally:
        os.umask(previous)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("num_class_embeds", [None, 3])
def test_compiles_as_one_graph_per_sequence_length(num_class_embeds):
    # `ids_keep` (from the generator's fixed count) gives a masked forward with no device read, so torch.compile
    # captures the masked and the full forward whole (fullgraph), one graph each, with the eager model's outputs.
    model = tiny_model(num_class_embeds=num_class_embeds).eval()
    sample, timestep = torch.randn(2, 3, 8, 8), torch.tensor([3, 700])
    labels = torch.tensor([0, 2]) if num_class_embeds else None
    generator = MaskGenerator("block", 0.5, block_size=2)
    keeps = [visible_indices(generator(2, 4, torch.Generator().manual_seed(seed)), 8) for seed in range(3)]
    for ids_keep in (keeps[0], None):
        explanation = torch._dynamo.explain(model)(sample, timestep, labels, ids_keep=ids_keep)
        assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager", dynamic=False)
    with torch.no_grad():
        for ids_keep in (*keeps, None, None):
            expected = model(sample, timestep, labels, ids_keep=ids_keep).sample
            assert torch.allclose(compiled(sample, timestep, labels, ids_keep=ids_keep).sample, expected, atol=1e-5)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2  # masked and full, not one per mask
    # The same masked forward from a `mask` (its count read back) as from its `ids_keep`.
    mask = generator(2, 4, torch.Generator().manual_seed(0))
    assert torch.equal(
        model(sample, timestep, labels, mask=mask).sample, model(sample, timestep, labels, ids_keep=keeps[0]).sample
    )
