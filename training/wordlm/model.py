"""The word LM: a config dataclass that a checkpoint stores beside the weights, the model, an ensemble of models,
and the ONNX step."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from training.kit.dropout import embedding_dropout, locked_dropout

State = tuple[Tensor, Tensor]  # (h, c), each (layers, B, H)


@dataclass
class WordLMConfig:
    vocab_size: int
    embedding: int = 400
    hidden: int = 400
    layers: int = 2
    tie_weights: bool = True
    dropout_input: float = 0.5  # locked dropout on the embeddings
    dropout_hidden: float = 0.3  # locked dropout between LSTM layers
    dropout_output: float = 0.5  # locked dropout before the decoder
    dropout_embedding: float = 0.1  # whole-word dropout
    dropout_weight: float = 0.3  # DropConnect on the hidden-to-hidden matrices

    def __post_init__(self) -> None:
        if self.tie_weights and self.embedding != self.hidden:
            raise ValueError("tie_weights needs embedding == hidden")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class WordLM(nn.Module):
    """Embedding -> stacked LSTM (one nn.LSTM per layer, so dropout between layers can be locked) -> decoder.

    Each layer is a plain nn.LSTM, so the ONNX export is one native LSTM op per layer.
    """

    def __init__(self, config: WordLMConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embedding)
        self.lstms = nn.ModuleList(
            nn.LSTM(config.embedding if i == 0 else config.hidden, config.hidden, batch_first=True)
            for i in range(config.layers)
        )
        self.decoder = nn.Linear(config.hidden, config.vocab_size)
        if config.tie_weights:
            self.decoder.weight = self.embed.weight
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def init_state(self, batch: int) -> State:
        zeros = torch.zeros(self.config.layers, batch, self.config.hidden)
        return zeros, zeros.clone()

    def _run_layer(self, i: int, x: Tensor, state: State) -> tuple[Tensor, State]:
        lstm = self.lstms[i]
        p = self.config.dropout_weight
        if self.training and p > 0:
            dropped = F.dropout(lstm.get_parameter("weight_hh_l0"), p, training=True)
            return functional_call(lstm, {"weight_hh_l0": dropped}, (x, state))
        return lstm(x, state)

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """tokens (B, T) int64 -> logits (B, T, V), new state ((L, B, H), (L, B, H))."""
        cfg = self.config
        h0, c0 = state if state is not None else self.init_state(tokens.size(0))
        x = embedding_dropout(self.embed, tokens, cfg.dropout_embedding, self.training)
        x = locked_dropout(x, cfg.dropout_input, self.training)
        hs, cs = [], []
        for i in range(cfg.layers):
            x, (h, c) = self._run_layer(i, x, (h0[i : i + 1], c0[i : i + 1]))
            hs.append(h)
            cs.append(c)
            last = i == cfg.layers - 1
            x = locked_dropout(x, cfg.dropout_output if last else cfg.dropout_hidden, self.training)
        return self.decoder(x), (torch.cat(hs), torch.cat(cs))


class WordLMEnsemble(nn.Module):
    """K word LMs (same config, different seeds) reading the same tokens; the next-word distribution is the mean of
    theirs. It looks like one WordLM of K x L layers to everything downstream: member k's layers are rows
    k*L .. k*L+L-1 of the state (K*L, B, H), so the engine's zero state and the sessions need no change.

    logits = log(mean_k softmax(logits_k)): log-probabilities, so softmax(logits) is the mixture itself and
    cross-entropy, sampling and top-k read it as they read a single model's logits.
    """

    def __init__(self, config: WordLMConfig, members: int) -> None:
        super().__init__()
        self.config = config  # of each member
        self.members = nn.ModuleList(WordLM(config) for _ in range(members))

    @property
    def state_layers(self) -> int:
        return len(self.members) * self.config.layers

    def init_state(self, batch: int) -> State:
        zeros = torch.zeros(self.state_layers, batch, self.config.hidden)
        return zeros, zeros.clone()

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """tokens (B, T) -> log-probabilities (B, T, V), new state ((K*L, B, H), (K*L, B, H))."""
        h0, c0 = state if state is not None else self.init_state(tokens.size(0))
        layers = self.config.layers
        log_probs, hs, cs = [], [], []
        for k, member in enumerate(self.members):
            rows = slice(k * layers, (k + 1) * layers)
            logits, (h, c) = member(tokens, (h0[rows], c0[rows]))
            log_probs.append(torch.log_softmax(logits, dim=-1))
            hs.append(h)
            cs.append(c)
        mixed = torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(len(self.members))
        return mixed, (torch.cat(hs), torch.cat(cs))


class WordLMStep(nn.Module):
    """The ONNX contract: tokens (B, T), h0, c0 (L, B, H) -> logits (B, T, V), hn, cn."""

    def __init__(self, model: WordLM | WordLMEnsemble) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logits, (hn, cn) = self.model(tokens, (h0, c0))
        return logits, hn, cn
