"""Evaluation of trained models. Accuracy here; robustness suites build on it (book chapter 3)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``images`` (N, 1, 28, 28) in [0, 1] classified as ``labels``; eval mode, batched."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        correct += (model(x).argmax(1).cpu() == labels[start:start + batch_size]).sum().item()
    model.train(was_training)
    return correct / len(images)
