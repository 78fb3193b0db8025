"""A small LSTM + linear module for the export and quantization tests: x (B, T, 8) -> y (B, T, 3), big enough that
its weights are stored as float16 and quantized."""

from torch import Tensor, nn


class Tagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 64, batch_first=True)
        self.head = nn.Linear(64, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.lstm(x)[0])
