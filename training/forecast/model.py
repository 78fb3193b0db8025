"""The forecaster's PyTorch modules: one quantile LSTM (a member) and the ensemble exported as the step model."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

State = tuple[Tensor, Tensor]  # (h, c), each (layers, B, H)


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
        below: list[Tensor] = []
        above: list[Tensor] = []
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


def ensemble_config(member: ForecasterConfig, members: int) -> dict[str, object]:
    """The checkpoint's model_config: a member's config and how many members."""
    return {**member.to_dict(), "members": members}


def build_ensemble(model_config: dict[str, object], state: dict[str, Tensor] | None = None) -> ForecastEnsemble:
    """The ensemble a checkpoint's model_config describes (with its state loaded, in eval mode)."""
    config = dict(model_config)
    members = int(config.pop("members"))  # type: ignore[call-overload]
    config["quantiles"] = tuple(config["quantiles"])  # type: ignore[arg-type]
    member = ForecasterConfig(**config)  # type: ignore[arg-type]
    ensemble = ForecastEnsemble([QuantileLSTM(member) for _ in range(members)])
    if state is not None:
        ensemble.load_state_dict(state)
    return ensemble.eval()
