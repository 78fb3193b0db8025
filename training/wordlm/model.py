"""The word LM: a config dataclass that a checkpoint stores beside the weights, the model, and its ONNX step."""

from __future__ import annotations

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


class WordLMStep(nn.Module):
    """The ONNX contract: tokens (B, T), h0, c0 (L, B, H) -> logits (B, T, V), hn, cn."""

    def __init__(self, model: WordLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logits, (hn, cn) = self.model(tokens, (h0, c0))
        return logits, hn, cn
