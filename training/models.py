"""PyTorch modules of the model families. Each has a config dataclass that a checkpoint stores beside its weights,
so a loader rebuilds the model from the file alone."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.kit.dropout import embedding_dropout, locked_dropout

State = tuple[Tensor, Tensor]  # (h, c), each (layers, B, H)


# ---- sentiment ------------------------------------------------------------------------------------------------------
SENTIMENT_POOLINGS = ("last", "max", "mean", "concat")


@dataclass
class SentimentConfig:
    vocab_size: int
    num_classes: int
    embedding: int = 128
    hidden: int = 128
    layers: int = 2
    pooling: str = "concat"  # last | max | mean | concat (last + max + mean, as in ULMFiT's classifier)
    dropout_embedding: float = 0.1  # whole-word dropout
    dropout_input: float = 0.3  # locked dropout on the embeddings
    dropout_hidden: float = 0.3  # between the LSTM layers
    dropout_output: float = 0.5  # on the pooled features, before the linear head
    pad_id: int = 0

    def __post_init__(self) -> None:
        if self.pooling not in SENTIMENT_POOLINGS:
            raise ValueError(f"pooling must be one of {SENTIMENT_POOLINGS}")

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
        self.lstm = nn.LSTM(
            config.embedding,
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
    plain model.
    """

    def __init__(self, members: list[BiLSTMClassifier]) -> None:
        super().__init__()
        assert members, "at least one classifier"
        self.members = nn.ModuleList(members)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        probs = [F.softmax(m(tokens, lengths), dim=-1) for m in self.members]
        return torch.stack(probs).mean(dim=0)


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


# ---- forecast --------------------------------------------------------------------------------------------------
@dataclass
class ForecasterConfig:
    features: int  # input features per step (their names and rules are in the manifest)
    hidden: int = 64
    layers: int = 2
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)  # ascending, includes 0.5
    dropout: float = 0.1  # between LSTM layers
    skip_feature: int = 0  # the skip path starts as a copy of this input (the seasonal lag: seasonal naive)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "quantiles": list(self.quantiles)}


class QuantileLSTM(nn.Module):
    """Stacked LSTM -> ordered quantiles of the next standardized value.

    median   = skip(x) + head_0(h)       a linear path from the inputs (initialised to copy one of them, e.g. the
                                         seasonal lag, so an untrained model is a seasonal naive forecast) + the LSTM
    q_below  = next quantile up - softplus(head_i(h))
    q_above  = next quantile down + softplus(head_j(h))
    so q0.1 <= q0.5 <= q0.9 holds by construction at every step.
    """

    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__()
        self.config = config
        self.median_index = list(config.quantiles).index(0.5)
        self.lstm = nn.LSTM(
            config.features,
            config.hidden,
            config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.head = nn.Linear(config.hidden, len(config.quantiles))
        self.skip = nn.Linear(config.features, 1, bias=False)
        with torch.no_grad():
            self.skip.weight.zero_()
            self.skip.weight[0, config.skip_feature] = 1.0
            self.head.weight.mul_(0.1)
            self.head.bias.zero_()

    def init_state(self, batch: int) -> State:
        zeros = torch.zeros(self.config.layers, batch, self.config.hidden)
        return zeros, zeros.clone()

    def quantiles(self, x: Tensor, out: Tensor) -> Tensor:
        """x (B, T, F) inputs and out (B, T, H) LSTM outputs -> (B, T, Q) ascending quantiles."""
        raw = self.head(out)  # (B, T, Q)
        mid = self.median_index
        median = self.skip(x)[..., 0] + raw[..., mid]  # (B, T)
        below, above = [], []
        q = median
        for i in range(mid - 1, -1, -1):  # unrolled at export: Q is fixed
            q = q - F.softplus(raw[..., i])
            below.insert(0, q)
        q = median
        for i in range(mid + 1, raw.size(-1)):
            q = q + F.softplus(raw[..., i])
            above.append(q)
        return torch.stack([*below, median, *above], dim=-1)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """x (B, T, F) -> quantiles (B, T, Q) of the value at t + 1, new state ((L, B, H), (L, B, H))."""
        out, state = self.lstm(x, state if state is not None else self.init_state(x.size(0)))
        return self.quantiles(x, out), state


class ForecastEnsemble(nn.Module):
    """The exported step model: x (B, T, F), h0, c0 (L, B, K * H) -> y (B, T, Q), hn, cn.

    K independently trained QuantileLSTMs read the same inputs; their quantiles are averaged (averaging ordered
    quantile vectors keeps them ordered). The members' states sit side by side along the last axis."""

    def __init__(self, members: list[QuantileLSTM]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.hidden = members[0].config.hidden
        self.layers = members[0].config.layers

    @property
    def state_hidden(self) -> int:
        return self.hidden * len(self.members)

    def forward(self, x: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        ys, hs, cs = [], [], []
        for k, member in enumerate(self.members):
            part = slice(k * self.hidden, (k + 1) * self.hidden)
            y, (h, c) = member(x, (h0[..., part].contiguous(), c0[..., part].contiguous()))
            ys.append(y)
            hs.append(h)
            cs.append(c)
        y = ys[0] if len(ys) == 1 else torch.stack(ys).mean(0)
        return y, torch.cat(hs, dim=-1), torch.cat(cs, dim=-1)
