"""Shared test setup: deterministic, single-threaded-friendly torch."""

import os

import pytest


# Nothing in the test suite may reach the network: the Hub client is told it is offline unless a test sets up
# the loopback Hub server itself.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A loopback Hub server (tests/hub_server.py) that huggingface_hub talks to for the length of a test."""
    from hub_server import LoopbackHub, use_loopback_hub

    with LoopbackHub(max_lifetime_s=120) as server:
        use_loopback_hub(server, monkeypatch, tmp_path / "hf_home")
        yield server
    assert server.unhandled == [], f"requests the loopback Hub does not model: {server.unhandled}"


@pytest.fixture
def tiny_vae():
    """A tiny random `AutoencoderKL` (tests/vae_testing.py): 32x32x3 images <-> 16x16x4 latents."""
    from vae_testing import make_tiny_vae

    return make_tiny_vae()


@pytest.fixture(autouse=True, scope="session")
def _deterministic():
    from diffusers.utils.torch_utils import enable_full_determinism

    enable_full_determinism()
