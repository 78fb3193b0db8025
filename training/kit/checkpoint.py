"""One checkpoint shape for every family (as nanoGPT's): the model's state beside the config that builds it.

    {"format": "cellstate-checkpoint/1", "family": "wordlm",
     "model_config": {...},   # the model config dataclass as a dict: ModelClass(ConfigClass(**model_config))
     "model_state": {...},    # that model's state_dict (an ensemble's holds all its members)
     "train_config": {...},   # the TrainConfig dataclass as a dict
     "epoch": 12, "best_metric": 48.3, "metric": "valid_perplexity",
     "history": [...],        # per-epoch records
     "extra": {...}}          # family specifics: vocabulary, data provenance, metrics, minutes, parameters

Only tensors and plain Python values are stored, so `torch.load(weights_only=True)` reads it (never a pickle of
code), and a loader rebuilds the model from the file alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

FORMAT = "cellstate-checkpoint/1"


@dataclass
class Checkpoint:
    family: str
    model_config: dict[str, Any]
    model_state: dict[str, Tensor] = field(repr=False)
    train_config: dict[str, Any]
    epoch: int  # epochs run (for an ensemble: its longest member's)
    best_metric: float  # the best validation figure, named by `metric`
    metric: str
    history: list[Any] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **{f.name: getattr(self, f.name) for f in fields(self)}}


def save_checkpoint(checkpoint: Checkpoint, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint.to_dict(), path)


def load_checkpoint(path: Path, family: str) -> Checkpoint:
    """Read a checkpoint of `family`; refuse files of another family or of an older shape."""
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file (made by an older version? train again)")
    if raw["family"] != family:
        raise ValueError(f"{path} is a {raw['family']} checkpoint, not {family}")
    return Checkpoint(**{f.name: raw[f.name] for f in fields(Checkpoint)})


C = TypeVar("C")
M = TypeVar("M", bound=nn.Module)


def build_model(checkpoint: Checkpoint, model_class: Callable[[C], M], config_class: Callable[..., C]) -> M:
    """The checkpoint's model, in eval mode: model_class(config_class(**model_config)) with its state loaded."""
    model = model_class(config_class(**checkpoint.model_config))
    model.load_state_dict(checkpoint.model_state)
    return model.eval()
