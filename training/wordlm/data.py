"""Batching of a token stream, as in the classic word language model.

The stream is cut into B contiguous columns and read in windows of `bptt` steps; the targets are the inputs shifted
by one, and the LSTM state is carried (detached) from one window to the next.

    stream  a b c d e f g h i j k l m n o p q r s t u v w x      B = 4 columns
            ┌ a g m s ┐
            │ b h n t │  window 1 (bptt = 3): inputs rows 0..2, targets rows 1..3
            │ c i o u │
            │ d j p v │
            │ e k q w │
            └ f l r x ┘
"""

from __future__ import annotations

import torch
from torch import Tensor


def batchify(ids: list[int], batch_size: int) -> Tensor:
    """Cut a token stream into `batch_size` contiguous columns: (n_steps, batch_size). The tail that does not
    fill a full row is dropped."""
    n_steps = len(ids) // batch_size
    data = torch.tensor(ids[: n_steps * batch_size], dtype=torch.long)
    return data.view(batch_size, n_steps).t().contiguous()


def get_batch(source: Tensor, i: int, bptt: int) -> tuple[Tensor, Tensor]:
    """Window starting at row i: inputs (B, T) and targets (B, T), the targets being the next tokens."""
    seq_len = min(bptt, source.size(0) - 1 - i)
    inputs = source[i : i + seq_len]
    targets = source[i + 1 : i + 1 + seq_len]
    return inputs.t().contiguous(), targets.t().contiguous()
