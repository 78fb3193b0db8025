"""The sentiment models: a BiLSTM classifier over packed sequences, the ensemble that is exported, and the
bidirectional language model that can pre-train the classifier's encoder. One config dataclass sizes them all."""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.kit.dropout import embedding_dropout, locked_dropout

Pooling = Literal["last", "max", "mean", "concat"]
POOLINGS: tuple[str, ...] = typing.get_args(Pooling)


@dataclass
class SentimentConfig:
    vocab_size: int
    num_classes: int
    # Embedding 64 / hidden 96 matched 128/128 on validation (0.797 vs 0.790, one seed each) at a third of the size.
    embedding: int = 64
    hidden: int = 96
    layers: int = 2
    pooling: Pooling = "concat"  # concat = last + max + mean, as in ULMFiT's classifier
    dropout_embedding: float = 0.1  # whole-word dropout
    dropout_input: float = 0.3  # locked dropout on the embeddings
    dropout_hidden: float = 0.3  # between the LSTM layers
    dropout_output: float = 0.5  # on the pooled features, before the linear head
    # One more input channel per token: its VADER lexicon valence / 4 (0 for words outside the lexicon), a fixed
    # table inside the graph (`valence` buffer, set from the vocabulary before training).
    valence: bool = False
    pad_id: int = 0

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}")

    @property
    def features(self) -> int:
        per_pooling = 2 * self.hidden  # forward + backward
        return per_pooling * (3 if self.pooling == "concat" else 1)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def time_mask(lengths: Tensor, steps: int) -> Tensor:
    """(B,) lengths -> (B, T) bool, True at real (non-padding) positions."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


class BiLSTMClassifier(nn.Module):
    """Embedding -> 2-layer bidirectional LSTM over packed sequences -> pooling over time -> dropout -> linear.

    Padded batches with lengths go through `pack_padded_sequence(enforce_sorted=False)`, so padding never enters
    the recurrence: the backward direction starts at each text's last real token. The pooled features of a text
    are therefore the same alone or inside a padded batch, and the ONNX export (LSTM with `sequence_lens`) keeps it.
    """

    def __init__(self, config: SentimentConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embedding, padding_idx=config.pad_id)
        if config.valence:
            self.register_buffer("valence", torch.zeros(config.vocab_size, 1))  # (V, 1), not trained
        self.lstm = nn.LSTM(
            config.embedding + int(config.valence),
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout_hidden if config.layers > 1 else 0.0,
        )
        self.head = nn.Linear(config.features, config.num_classes)

    def encode(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """tokens (B, T) int64 (padded), lengths (B,) int64 >= 1 -> pooled features (B, F)."""
        cfg = self.config
        steps = tokens.size(1)
        x = embedding_dropout(self.embed, tokens, cfg.dropout_embedding, self.training)  # (B, T, E)
        x = locked_dropout(x, cfg.dropout_input, self.training)
        if cfg.valence:  # the lexicon channel is never dropped: (B, T, E + 1)
            valence: Tensor = self.valence  # type: ignore[assignment]  # a buffer
            x = torch.cat([x, F.embedding(tokens, valence)], dim=-1)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_out, (h_n, _) = self.lstm(packed)
        # (B, T, 2H); positions past a text's length are zeros. total_length keeps T = the padded width.
        out, _ = nn.utils.rnn.pad_packed_sequence(packed_out, batch_first=True, total_length=steps)
        # h_n (layers * 2, B, H): the top layer's forward state after the last real token, backward after the first.
        last = torch.cat([h_n[-2], h_n[-1]], dim=1)  # (B, 2H)
        if cfg.pooling == "last":
            return last
        mask = time_mask(lengths, steps).unsqueeze(-1)  # (B, T, 1)
        # Padding is masked out of both poolings (an all-negative feature must not max out at a padded 0).
        max_pool = out.masked_fill(~mask, float("-inf")).amax(dim=1)  # (B, 2H)
        mean_pool = (out * mask).sum(dim=1) / lengths.unsqueeze(1).to(out.dtype)  # (B, 2H)
        if cfg.pooling == "max":
            return max_pool
        if cfg.pooling == "mean":
            return mean_pool
        return torch.cat([last, max_pool, mean_pool], dim=1)  # (B, 6H)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """tokens (B, T), lengths (B,) -> logits (B, classes)."""
        features = self.encode(tokens, lengths)
        features = F.dropout(features, self.config.dropout_output, self.training)
        return self.head(features)


class SentimentProbs(nn.Module):
    """The ONNX contract: tokens (B, T) int64 padded, lengths (B,) int64 -> probs (B, classes) float32.

    Several members are averaged (an ensemble of classifiers trained with different seeds); one member is the
    plain model. A temperature other than 1 rescales the averaged probabilities, softmax(log p / T), inside the
    graph (temperature scaling fitted on validation): probabilities change, the argmax never does.
    """

    def __init__(self, members: list[BiLSTMClassifier], temperature: float = 1.0) -> None:
        super().__init__()
        assert members, "at least one classifier"
        self.members = nn.ModuleList(members)
        self.temperature = temperature

    @classmethod
    def untrained(cls, config: SentimentConfig, members: int) -> SentimentProbs:
        """An ensemble of the given size and config, ready to take a saved state."""
        return cls([BiLSTMClassifier(config) for _ in range(members)])

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        probs = [F.softmax(m(tokens, lengths), dim=-1) for m in self.members]
        mean = torch.stack(probs).mean(dim=0)  # (B, classes)
        if self.temperature == 1.0:
            return mean
        return F.softmax(torch.log(mean.clamp_min(1e-12)) / self.temperature, dim=-1)


class BiLanguageModel(nn.Module):
    """Pre-training for the classifier's encoder: a forward and a backward 2-layer LSTM language model sharing one
    embedding and one adaptive softmax (as ELMo's bidirectional LM).

    The two directions never see each other, so each is a true language model. Their weights map exactly onto a
    bidirectional nn.LSTM (see `transfer_to`): layer 0 directly; layer 1 takes [forward, backward] outputs of layer 0,
    so each direction's input weights are placed in its own half and the other half starts at zero.
    """

    def __init__(self, config: SentimentConfig, cutoffs: tuple[int, ...] = (2000,)) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embedding, padding_idx=config.pad_id)
        kwargs = {"num_layers": config.layers, "batch_first": True, "dropout": config.dropout_hidden}
        self.forward_lstm = nn.LSTM(config.embedding, config.hidden, **kwargs)
        self.backward_lstm = nn.LSTM(config.embedding, config.hidden, **kwargs)
        # Adaptive softmax: the frequent words in a full-size head, rare ones in smaller clusters (far cheaper than
        # a softmax over the whole vocabulary). With no usable cutoff (tiny vocabularies), one plain softmax.
        cutoffs = tuple(c for c in cutoffs if 0 < c < config.vocab_size - 1)
        self.softmax = (
            nn.AdaptiveLogSoftmaxWithLoss(config.hidden, config.vocab_size, list(cutoffs), div_value=4.0)
            if cutoffs
            else None
        )
        self.decoder = nn.Linear(config.hidden, config.vocab_size) if not cutoffs else None

    def _direction_loss(self, lstm: nn.LSTM, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, int]:
        """Sum of next-token NLL over one direction. tokens (B, T) padded, lengths (B,) >= 2."""
        cfg = self.config
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        x = embedding_dropout(self.embed, inputs, cfg.dropout_embedding, self.training)
        x = locked_dropout(x, cfg.dropout_input, self.training)
        lens = (lengths - 1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
        out, _ = lstm(packed)
        # Packing the targets with the same lengths lines their .data up with the outputs' .data: (N,) vs (N, H).
        packed_targets = nn.utils.rnn.pack_padded_sequence(targets, lens, batch_first=True, enforce_sorted=False)
        hidden = F.dropout(out.data, cfg.dropout_output, self.training)  # (N, H)
        if self.softmax is not None:
            nll = -self.softmax(hidden, packed_targets.data).output.sum()
        else:
            assert self.decoder is not None
            nll = F.cross_entropy(self.decoder(hidden), packed_targets.data, reduction="sum")
        return nll, packed_targets.data.numel()

    def forward(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, int]:
        """Summed NLL of both directions and the number of predictions. tokens (B, T), lengths (B,) >= 2."""
        forward_nll, n = self._direction_loss(self.forward_lstm, tokens, lengths)
        backward_nll, m = self._direction_loss(self.backward_lstm, reverse_padded(tokens, lengths), lengths)
        return forward_nll + backward_nll, n + m

    @torch.no_grad()
    def transfer_to(self, classifier: BiLSTMClassifier) -> None:
        """Initialise the classifier's embedding and bidirectional LSTM from this model (same sizes)."""
        cfg, target = self.config, classifier.config
        if target.valence:
            raise ValueError("pre-training does not cover the lexicon input channel (valence)")
        sizes = (cfg.vocab_size, cfg.embedding, cfg.hidden, cfg.layers)
        if sizes != (target.vocab_size, target.embedding, target.hidden, target.layers):
            raise ValueError("pre-trained and classifier sizes differ")
        classifier.embed.weight.copy_(self.embed.weight)
        hidden = cfg.hidden
        for layer in range(cfg.layers):
            for suffix, source in (("", self.forward_lstm), ("_reverse", self.backward_lstm)):
                for kind in ("weight_hh", "bias_ih", "bias_hh"):
                    getattr(classifier.lstm, f"{kind}_l{layer}{suffix}").copy_(getattr(source, f"{kind}_l{layer}"))
                w_ih = getattr(classifier.lstm, f"weight_ih_l{layer}{suffix}")
                src = getattr(source, f"weight_ih_l{layer}")  # (4H, E) at layer 0, (4H, H) above
                if layer == 0:
                    w_ih.copy_(src)
                else:  # input is [forward (H), backward (H)]: each direction reads its own half
                    w_ih.zero_()
                    offset = 0 if suffix == "" else hidden
                    w_ih[:, offset : offset + hidden].copy_(src)


def reverse_padded(tokens: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each row's first `length` entries, leaving the padding in place. (B, T) -> (B, T)."""
    steps = tokens.size(1)
    positions = torch.arange(steps, device=tokens.device)[None, :]  # (1, T)
    index = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)  # (B, T)
    return tokens.gather(1, index)
