"""Shared fixtures. Tests run on CPU with float64 where they compare against dense linear algebra."""

from __future__ import annotations

import torch

torch.set_num_threads(2)
