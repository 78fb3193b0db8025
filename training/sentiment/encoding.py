"""Texts to ids the way the service does it, and padded batches of them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from service.tokenizer import PAD, UNK, Vocab, tokenize
from training.data.sentiment import Example


def text_tokens(text: str, max_tokens: int) -> list[str]:
    """The service's tokenization of a snippet: no <eos>, cut to `max_tokens`."""
    return tokenize(text, add_eos=False)[:max_tokens]


def build_vocab(train: Sequence[Example], min_count: int, extra_words: Iterable[str] = ()) -> Vocab:
    """Train-split words seen at least `min_count` times, then `extra_words` not among them (the lexicon's)."""
    tokens = (t for e in train for t in tokenize(e.text, add_eos=False))
    vocab = Vocab.build(tokens, min_count, specials=(PAD, UNK))
    assert vocab.stoi[PAD] == 0, "padding id must be 0"
    extra = [w for w in dict.fromkeys(extra_words) if w not in vocab.stoi]
    return Vocab(vocab.itos + extra) if extra else vocab


def valence_table(vocab: Vocab, lexicon: dict[str, float]) -> torch.Tensor:
    """(V, 1) float32: each vocabulary word's lexicon valence / 4 (in [-1, 1], rounded to float16); 0 for other
    words and specials."""
    table = torch.tensor([[lexicon.get(w, 0.0) / 4.0] for w in vocab.itos], dtype=torch.float32)
    return table.half().float()  # float16-representable: exported weights are stored as float16


def unk_rate(examples: Sequence[Example], vocab: Vocab, max_tokens: int) -> float:
    """Share of the tokens the model reads that are <unk>."""
    ids = [i for e in examples for i in vocab.encode(text_tokens(e.text, max_tokens))]
    return sum(i == vocab.unk_id for i in ids) / max(len(ids), 1)


@dataclass
class Encoded:
    ids: list[list[int]]  # one list per text, 1..max_tokens ids
    labels: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.ids)


def encode(examples: Sequence[Example], vocab: Vocab, max_tokens: int) -> Encoded:
    ids = [vocab.encode(text_tokens(e.text, max_tokens)) or [vocab.unk_id] for e in examples]
    return Encoded(ids=ids, labels=np.asarray([e.label for e in examples], dtype=np.int64))


def pad_batch(seqs: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Right-pad with id 0: tokens (B, T_max) int64, lengths (B,) int64."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    tokens = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return tokens, lengths


def padded_case(seqs: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
    """The ONNX graph's feeds for these texts: {"tokens": (B, T_max), "lengths": (B,)}."""
    tokens, lengths = pad_batch(seqs)
    return {"tokens": tokens.numpy(), "lengths": lengths.numpy()}


def shuffled_batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    order = rng.permutation(n)
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]


def bucketed_batches(
    seqs: Sequence[Sequence[int]], batch_size: int, rng: np.random.Generator, pool: int = 50
) -> Iterator[np.ndarray]:
    """Shuffled batches of similar lengths: shuffle, sort each pool of `pool` batches' rows by length, cut, shuffle
    the batches. A packed LSTM runs as many steps as a batch's longest row, so this cuts the steps per batch about
    2-3x on these snippets (random batches of 64 nearly always hold one long row)."""
    order = rng.permutation(len(seqs))
    batches = []
    for start in range(0, len(order), batch_size * pool):
        chunk = order[start : start + batch_size * pool]
        chunk = chunk[np.argsort([len(seqs[i]) for i in chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    for b in rng.permutation(len(batches)):
        yield batches[b]


def length_sorted_batches(seqs: Sequence[Sequence[int]], batch_size: int) -> Iterator[np.ndarray]:
    """Batches of similar lengths (little padding); the caller scatters results back by index."""
    order = np.argsort([len(s) for s in seqs], kind="stable")
    for i in range(0, len(order), batch_size):
        yield order[i : i + batch_size]
