"""Test-wide settings."""

import signal

import pytest
import torch

# The test networks are tiny: one thread is as fast, and far faster on a busy machine, where
# OpenMP threads competing for two cores slow small convolutions down by an order of magnitude.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_thread():
    """Every test starts with one thread, whatever an earlier test (or a script it ran) set."""
    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def interruptible():
    """Ctrl-C raises KeyboardInterrupt in every test, as in a terminal, even when pytest was started
    in the background of a non-interactive shell (``cmd &``), which starts it with SIGINT ignored."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
