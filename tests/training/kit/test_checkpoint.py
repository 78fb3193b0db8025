"""One checkpoint shape: the file alone rebuilds the model; other families and older shapes are refused."""

from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from training.kit.checkpoint import Checkpoint, build_model, load_checkpoint, save_checkpoint


@dataclass
class TinyConfig:
    inputs: int
    hidden: int = 5


class Tiny(nn.Module):
    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        self.lstm = nn.LSTM(config.inputs, config.hidden, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.lstm(x)[0]


def _checkpoint(model: Tiny, config: TinyConfig) -> Checkpoint:
    return Checkpoint(
        family="tiny",
        model_config=asdict(config),
        model_state=model.state_dict(),
        train_config={"seed": 3, "lr": 0.1},
        epoch=4,
        best_metric=1.25,
        metric="valid_loss",
        history=[{"epoch": 1, "valid_loss": 2.0}, {"epoch": 4, "valid_loss": 1.25}],
        extra={"vocab": ["<unk>", "a"]},
    )


def test_a_model_is_rebuilt_from_the_file_alone(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = TinyConfig(inputs=3, hidden=7)
    model = Tiny(config).eval()
    save_checkpoint(_checkpoint(model, config), tmp_path / "runs" / "tiny.pt")  # makes the directory

    loaded = load_checkpoint(tmp_path / "runs" / "tiny.pt", "tiny")
    rebuilt = build_model(loaded, Tiny, TinyConfig)
    x = torch.randn(2, 5, 3)
    assert not rebuilt.training and rebuilt.lstm.hidden_size == 7
    torch.testing.assert_close(rebuilt(x), model(x), atol=0, rtol=0)
    assert (loaded.epoch, loaded.best_metric, loaded.metric) == (4, 1.25, "valid_loss")
    assert loaded.history[-1] == {"epoch": 4, "valid_loss": 1.25} and loaded.extra == {"vocab": ["<unk>", "a"]}
    assert loaded.train_config == {"seed": 3, "lr": 0.1}


def test_other_families_and_old_files_are_refused(tmp_path: Path) -> None:
    model = Tiny(TinyConfig(inputs=2))
    save_checkpoint(_checkpoint(model, TinyConfig(inputs=2)), tmp_path / "tiny.pt")
    with pytest.raises(ValueError, match="tiny checkpoint, not wordlm"):
        load_checkpoint(tmp_path / "tiny.pt", "wordlm")
    torch.save({"family": "tiny", "config": {}, "state_dict": model.state_dict()}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="older version"):
        load_checkpoint(tmp_path / "old.pt", "tiny")
