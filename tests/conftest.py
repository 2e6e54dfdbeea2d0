"""Shared test setup: deterministic, single-threaded-friendly torch."""

import os

import pytest


# Nothing in the test suite may reach the network: the Hub client is told it is offline unless a test sets up
# the loopback Hub server itself.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(autouse=True, scope="session")
def _deterministic():
    from diffusers.utils.torch_utils import enable_full_determinism

    enable_full_determinism()
