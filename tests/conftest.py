"""Test-wide settings."""

import torch

# The test networks are tiny: one thread is as fast, and far faster on a busy machine, where
# OpenMP threads competing for two cores slow small convolutions down by an order of magnitude.
torch.set_num_threads(1)
