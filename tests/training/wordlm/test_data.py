"""Batching of the token stream into columns and truncated-BPTT windows."""

import torch

from training.wordlm.data import batchify, get_batch


def test_batch_targets_are_inputs_shifted_by_one() -> None:
    data = batchify(list(range(20)), batch_size=2)  # columns 0..9 and 10..19
    assert data.shape == (10, 2)
    inputs, targets = get_batch(data, 0, bptt=4)
    assert inputs.tolist() == [[0, 1, 2, 3], [10, 11, 12, 13]]
    assert torch.equal(targets[:, :-1], inputs[:, 1:])
    assert targets[:, -1].tolist() == [4, 14]
    last_inputs, last_targets = get_batch(data, 8, bptt=4)  # the final window is shorter
    assert last_inputs.tolist() == [[8], [18]] and last_targets.tolist() == [[9], [19]]


def test_the_tail_that_fills_no_row_is_dropped() -> None:
    data = batchify(list(range(23)), batch_size=4)
    assert data.shape == (5, 4) and data[:, 0].tolist() == [0, 1, 2, 3, 4] and data.max() == 19
