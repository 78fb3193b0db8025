"""The word LM's activations graph: one LSTM step written out as explicit matmuls, so that every layer's hidden
state, cell state and gates come out of ONNX.

ONNX's native `LSTM` op returns the hidden state of every step but the cell state of the last step only, and never
the gates. This graph is one step (one token) of the whole stack; a reader walks a text token by token carrying
(h, c), exactly as generation does:

    tokens int64 (B, 1), h0 float32 (L, B, H), c0 float32 (L, B, H)
      -> hidden (L, B, H), cell (L, B, H), gates (L, B, 4, H)   gates: input, forget, cell candidate, output
                                                                 (after their sigmoid / tanh)

`export_activations` writes `activations.onnx` and `embeddings.npy` (the input embedding matrix, for nearest
neighbours) into a version directory being built, after checking the graph against the trained `nn.LSTM`s.

An ensemble's graph is its members' graphs side by side, their layers stacked as in the step model's state (member k
holds layers k*L .. k*L+L-1), and its embeddings are the members' matrices side by side (V, K*E).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor, nn

from service.manifest import GraphSpec
from training.kit.export import ParityError, export_onnx, graph_spec, ort_session
from training.wordlm.model import WordLM, WordLMEnsemble

log = logging.getLogger(__name__)

GRAPH_FILE = "activations.onnx"
EMBEDDINGS_FILE = "embeddings.npy"
INPUTS = ["tokens", "h0", "c0"]
OUTPUTS = ["hidden", "cell", "gates"]
PARITY_ATOL = 1e-5


class WordLMActivationStep(nn.Module):
    """One step of a WordLM's LSTM stack from its trained weights, exposing cell states and gates.

    nn.LSTM computes, per layer, with the gate rows stacked in the order (input, forget, cell candidate, output):
        pre = x W_ih^T + b_ih + h W_hh^T + b_hh               (B, 4H)
        i, f, o = sigmoid(.)   g = tanh(.)
        c' = f * c + i * g     h' = o * tanh(c')
    """

    def __init__(self, model: WordLM) -> None:
        super().__init__()
        cfg = model.config
        self.layers, self.hidden = cfg.layers, cfg.hidden
        self.embedding = nn.Parameter(model.embed.weight.detach().clone(), requires_grad=False)  # (V, E)
        # Per layer: W_ih (4H, in), W_hh (4H, H) and the two biases summed (4H,).
        self.w_ih = nn.ParameterList(
            nn.Parameter(lstm.weight_ih_l0.detach().clone(), requires_grad=False) for lstm in model.lstms
        )
        self.w_hh = nn.ParameterList(
            nn.Parameter(lstm.weight_hh_l0.detach().clone(), requires_grad=False) for lstm in model.lstms
        )
        self.bias = nn.ParameterList(
            nn.Parameter((lstm.bias_ih_l0 + lstm.bias_hh_l0).detach().clone(), requires_grad=False)
            for lstm in model.lstms
        )

    def forward(self, tokens: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """tokens (B, 1), h0 and c0 (L, B, H) -> hidden (L, B, H), cell (L, B, H), gates (L, B, 4, H)."""
        x = self.embedding[tokens[:, 0]]  # (B, E)
        hiddens, cells, gates = [], [], []
        for layer in range(self.layers):
            pre = x @ self.w_ih[layer].t() + h0[layer] @ self.w_hh[layer].t() + self.bias[layer]  # (B, 4H)
            # Constant slices rather than a reshape to (B, 4, H): ONNX shape inference then keeps H a fixed size.
            i, f, g, o = (pre[:, k * self.hidden : (k + 1) * self.hidden] for k in range(4))  # each (B, H)
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            c = f * c0[layer] + i * g  # (B, H)
            h = o * torch.tanh(c)
            hiddens.append(h)
            cells.append(c)
            gates.append(torch.stack([i, f, g, o], dim=1))  # (B, 4, H)
            x = h
        return torch.stack(hiddens), torch.stack(cells), torch.stack(gates)


class EnsembleActivationStep(nn.Module):
    """The members' one-step graphs side by side: member k reads and writes state rows k*L .. k*L+L-1."""

    def __init__(self, ensemble: WordLMEnsemble) -> None:
        super().__init__()
        self.steps = nn.ModuleList(WordLMActivationStep(member) for member in ensemble.members)
        self.layers = ensemble.config.layers

    def forward(self, tokens: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        hidden, cell, gates = [], [], []
        for k, step in enumerate(self.steps):
            rows = slice(k * self.layers, (k + 1) * self.layers)
            h, c, g = step(tokens, h0[rows], c0[rows])
            hidden.append(h)
            cell.append(c)
            gates.append(g)
        return torch.cat(hidden), torch.cat(cell), torch.cat(gates)


def _state_layers(model: WordLM | WordLMEnsemble) -> int:
    return model.state_layers if isinstance(model, WordLMEnsemble) else model.config.layers


def _embeddings(model: WordLM | WordLMEnsemble) -> np.ndarray:
    members = model.members if isinstance(model, WordLMEnsemble) else [model]
    return torch.cat([m.embed.weight.detach() for m in members], dim=1).numpy().astype(np.float32)  # (V, K*E)


@dataclass
class ActivationsExport:
    graph: GraphSpec
    embeddings_file: str
    max_abs_diff: float  # hidden and cell states vs nn.LSTM, over whole sequences
    gate_consistency_max_abs_diff: float  # c_t = f c_{t-1} + i g and h_t = o tanh(c_t) from the graph's own gates


def parity_sequences(vocab_size: int, layers: int, hidden: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Whole sequences (batch 1 and 5, 23 steps) with a non-zero incoming state."""
    rng = np.random.default_rng(seed)
    return [
        {
            "tokens": rng.integers(0, vocab_size, size=(batch, 23), dtype=np.int64),
            "h0": rng.standard_normal((layers, batch, hidden)).astype(np.float32) * 0.5,
            "c0": rng.standard_normal((layers, batch, hidden)).astype(np.float32) * 0.5,
        }
        for batch in (1, 5)
    ]


@torch.no_grad()
def reference_states(
    model: WordLM | WordLMEnsemble, tokens: Tensor, h0: Tensor, c0: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """What the trained nn.LSTMs say, layer by layer (eval mode: no dropout).

    Returns h for every step from each layer's whole-sequence output (B, T, L, H), c of every step from the same
    nn.LSTM run one step at a time (B, T, L, H), and c after the whole-sequence run (L, B, H). For an ensemble,
    the members' layers one after the other (L = K x the member's layers)."""
    if isinstance(model, WordLMEnsemble):
        layers = model.config.layers
        parts = [
            reference_states(m, tokens, h0[k * layers : (k + 1) * layers], c0[k * layers : (k + 1) * layers])
            for k, m in enumerate(model.members)
        ]
        return (
            torch.cat([p[0] for p in parts], 2),
            torch.cat([p[1] for p in parts], 2),
            torch.cat([p[2] for p in parts]),
        )
    model.eval()
    x = model.embed(tokens)  # (B, T, E)
    steps = tokens.size(1)
    hs, cs, c_last = [], [], []
    for layer, lstm in enumerate(model.lstms):
        state = (h0[layer : layer + 1], c0[layer : layer + 1])
        out, (_, c_n) = lstm(x, state)  # out (B, T, H): h of every step
        per_step = []
        for t in range(steps):
            _, state = lstm(x[:, t : t + 1], state)
            per_step.append(state[1][0])  # (B, H)
        hs.append(out)
        cs.append(torch.stack(per_step, dim=1))  # (B, T, H)
        c_last.append(c_n[0])
        x = out
    return torch.stack(hs, dim=2), torch.stack(cs, dim=2), torch.stack(c_last)


def check_activation_parity(
    model: WordLM | WordLMEnsemble,
    session: ort.InferenceSession,
    cases: list[dict[str, np.ndarray]],
    atol: float = PARITY_ATOL,
) -> tuple[float, float]:
    """Walk each sequence through the graph token by token and compare with nn.LSTM; raise ParityError past `atol`.

    Returns (max |diff| of hidden/cell states, max |diff| of the gate identities)."""
    worst_state, worst_gates = 0.0, 0.0
    for case in cases:
        tokens, h, c = case["tokens"], case["h0"], case["c0"]
        ref_h, ref_c, ref_c_last = (
            r.numpy() for r in reference_states(model, *(torch.from_numpy(v) for v in (tokens, h, c)))
        )
        for t in range(tokens.shape[1]):
            hidden, cell, gates = session.run(OUTPUTS, {"tokens": tokens[:, t : t + 1], "h0": h, "c0": c})
            i, f, g, o = (gates[:, :, k] for k in range(4))  # each (L, B, H)
            gate_diff = max(
                float(np.max(np.abs(f * c + i * g - cell))), float(np.max(np.abs(o * np.tanh(cell) - hidden)))
            )
            state_diff = max(
                float(np.max(np.abs(hidden - ref_h[:, t].transpose(1, 0, 2)))),
                float(np.max(np.abs(cell - ref_c[:, t].transpose(1, 0, 2)))),
            )
            worst_state, worst_gates = max(worst_state, state_diff), max(worst_gates, gate_diff)
            if not (state_diff <= atol and gate_diff <= atol):
                raise ParityError(
                    f"activations graph at step {t} (batch {tokens.shape[0]}): max |diff| vs nn.LSTM "
                    f"{state_diff:.3g}, gate identities {gate_diff:.3g} (limit {atol:g})"
                )
            h, c = hidden, cell
        end_diff = float(np.max(np.abs(c - ref_c_last)))
        worst_state = max(worst_state, end_diff)
        if not end_diff <= atol:
            raise ParityError(f"activations graph: final cell state differs from nn.LSTM by {end_diff:.3g}")
    log.info("activations parity ok: states %.3g, gates %.3g (limit %g)", worst_state, worst_gates, atol)
    return worst_state, worst_gates


def export_activations(model: WordLM | WordLMEnsemble, out: Path, step: nn.Module | None = None) -> ActivationsExport:
    """Write activations.onnx and embeddings.npy into `out` (a version being built); raises ParityError, leaving
    neither file behind, when the graph disagrees with the model. `step` overrides the module exported (tests)."""
    cfg = model.config
    layers = _state_layers(model)
    model.eval()
    if step is None:
        step = EnsembleActivationStep(model) if isinstance(model, WordLMEnsemble) else WordLMActivationStep(model)
    path, embeddings_path = out / GRAPH_FILE, out / EMBEDDINGS_FILE
    case = parity_sequences(cfg.vocab_size, layers, cfg.hidden)[1]
    example = tuple(torch.from_numpy(v) for v in (case["tokens"][:, :1], case["h0"], case["c0"]))
    try:
        export_onnx(
            step,
            example,
            path,
            INPUTS,
            OUTPUTS,
            {name: {0: "batch"} if name == "tokens" else {1: "batch"} for name in INPUTS + OUTPUTS},
        )
        cases = parity_sequences(cfg.vocab_size, layers, cfg.hidden)
        max_diff, gate_diff = check_activation_parity(model, ort_session(path), cases)
        np.save(embeddings_path, _embeddings(model), allow_pickle=False)
    except BaseException:
        path.unlink(missing_ok=True)
        embeddings_path.unlink(missing_ok=True)
        raise
    return ActivationsExport(graph_spec(path), EMBEDDINGS_FILE, max_diff, gate_diff)
