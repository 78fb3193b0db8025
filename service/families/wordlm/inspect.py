"""Looking inside the word LM: per-token LSTM activations and nearest neighbours in the embedding space.

Both read extra artifacts of a word-LM version (see training/activations.py):
- the `activations` graph, one LSTM step of the whole stack: tokens (B, 1), h0, c0 (L, B, H) -> hidden (L, B, H),
  cell (L, B, H), gates (L, B, 4, H). A text is walked token by token carrying (h, c), from the zero state, as a
  fresh /generate prompt is read;
- `embeddings.npy`, the input embedding matrix (V, E), named by the manifest's `config.embeddings_file`.

A version exported before these existed is still served for generation; inspection then answers 503.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from ...registry import LoadedModel
from ...tokenizer import EOS, PAD
from .engine import EncodedText, WordLMEngine

ROLE = "activations"
GATES = ("input", "forget", "candidate", "output")  # the order of the graph's gates axis
INPUTS = ("tokens", "h0", "c0")
OUTPUTS = ("hidden", "cell", "gates")


class InspectionUnavailable(Exception):
    """The served version lacks what inspection needs (answered 503)."""


class UnknownWord(Exception):
    """The word is not in the vocabulary (answered 404)."""


@dataclass
class Activations:
    """One walk over B texts of T tokens each."""

    hidden: np.ndarray  # (B, T, L, H) h after each token
    cell: np.ndarray  # (B, T, L, H) c after each token
    gates: np.ndarray | None  # (B, T, L, 4, H) input, forget, candidate, output gates at each token
    final_state: tuple[np.ndarray, np.ndarray]  # (h, c) after the last token, each (L, B, H): walk on from here


class ActivationWalker:
    """Runs the single-step activations graph over token ids, carrying (h, c) from one token to the next."""

    def __init__(self, session: ort.InferenceSession, layers: int, hidden: int) -> None:
        inputs = tuple(i.name for i in session.get_inputs())
        outputs = tuple(o.name for o in session.get_outputs())
        assert inputs == INPUTS and outputs == OUTPUTS, f"activations graph contract: {inputs} -> {outputs}"
        self.session, self.layers, self.hidden = session, layers, hidden

    @classmethod
    def from_model(cls, model: LoadedModel) -> ActivationWalker:
        session = model.sessions.get(ROLE)
        if session is None:
            raise InspectionUnavailable(
                f"{model.family} version {model.version} has no activations graph (it was exported before "
                "inspection existed); re-export it with `python -m training.wordlm export`"
            )
        return cls(session, model.manifest.config["layers"], model.manifest.config["hidden"])

    def walk(
        self, ids: np.ndarray, keep_gates: bool = True, state: tuple[np.ndarray, np.ndarray] | None = None
    ) -> Activations:
        """ids (B, T) int64 -> the activations after every token, from `state` (default: the zero state)."""
        batch, steps = ids.shape
        shape = (batch, steps, self.layers, self.hidden)
        hidden, cell = np.empty(shape, np.float32), np.empty(shape, np.float32)
        gates = np.empty((batch, steps, self.layers, 4, self.hidden), np.float32) if keep_gates else None
        if state is None:
            h = np.zeros((self.layers, batch, self.hidden), np.float32)
            c = np.zeros_like(h)
        else:
            h, c = state
        tokens = np.ascontiguousarray(ids, dtype=np.int64)
        for t in range(steps):
            h, c, g = self.session.run(None, {"tokens": tokens[:, t : t + 1], "h0": h, "c0": c})
            hidden[:, t] = h.transpose(1, 0, 2)  # (L, B, H) -> (B, L, H)
            cell[:, t] = c.transpose(1, 0, 2)
            if gates is not None:
                gates[:, t] = g.transpose(1, 0, 2, 3)  # (L, B, 4, H) -> (B, L, 4, H)
        return Activations(hidden, cell, gates, (h, c))


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (an all-zero row stays zero), so a dot product is a cosine similarity."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: np.ndarray = (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


@dataclass
class LayerInspection:
    layer: int
    neurons: np.ndarray  # (K,) the neurons reported, in order
    hidden: np.ndarray  # (T, K)
    cell: np.ndarray  # (T, K)
    gates: np.ndarray | None  # (T, 4, K)
    top_neurons: np.ndarray | None  # (T, k) per token, the neurons with the largest |h| (top-k mode)
    top_hidden: np.ndarray | None  # (T, k) their h


@dataclass
class Inspection:
    text: EncodedText
    layers: list[LayerInspection]


class Inspector:
    """Inspection of one served word-LM version (built once per version, shared by requests)."""

    def __init__(self, engine: WordLMEngine) -> None:
        self.engine = engine
        model = engine.model
        self.layers, self.hidden = engine.layers, engine.hidden
        self.walker: ActivationWalker | None = None
        self.walker_missing = ""
        try:
            self.walker = ActivationWalker.from_model(model)
        except InspectionUnavailable as exc:
            self.walker_missing = str(exc)
        self.unit_embeddings: np.ndarray | None = None  # (V, E), rows of length 1
        embeddings_file = model.manifest.config.get("embeddings_file")
        if embeddings_file:
            # Listed in the manifest's files, so the registry has verified its sha256 before serving the version.
            matrix = np.load(model.directory / embeddings_file, allow_pickle=False)
            assert matrix.shape == (len(engine.vocab), matrix.shape[1]), f"embeddings shape {matrix.shape}"
            self.unit_embeddings = unit_rows(matrix)
        specials = [engine.vocab.stoi[t] for t in (EOS, PAD, engine.vocab.unk) if t in engine.vocab.stoi]
        self.special_ids = np.array(sorted(set(specials)), dtype=np.int64)

    # ---- activations ------------------------------------------------------------------------------------------
    def inspect(
        self, text: EncodedText, layers: list[int], neurons: list[int] | None, top_k: int, gates: bool
    ) -> Inspection:
        """Walk the text; per chosen layer report `neurons`, or (when None) the top_k neurons by mean |h| over the
        text together with each token's own top_k neurons by |h|. Layers and neurons are already validated."""
        if self.walker is None:
            raise InspectionUnavailable(self.walker_missing)
        acts = self.walker.walk(np.asarray([text.ids], dtype=np.int64), keep_gates=gates)
        reports = []
        for layer in layers:
            hidden, cell = acts.hidden[0, :, layer], acts.cell[0, :, layer]  # (T, H)
            top_neurons = top_hidden = None
            if neurons is not None:
                chosen = np.asarray(neurons, dtype=np.int64)
            else:
                magnitude = np.abs(hidden)  # (T, H)
                # Stable sorts: equal scores keep neuron order, so the answer is deterministic.
                chosen = np.argsort(-magnitude.mean(axis=0), kind="stable")[:top_k]
                top_neurons = np.argsort(-magnitude, axis=1, kind="stable")[:, :top_k]  # (T, k)
                top_hidden = np.take_along_axis(hidden, top_neurons, axis=1)
            layer_gates = acts.gates[0, :, layer][:, :, chosen] if acts.gates is not None else None
            reports.append(
                LayerInspection(layer, chosen, hidden[:, chosen], cell[:, chosen], layer_gates, top_neurons, top_hidden)
            )
        return Inspection(text=text, layers=reports)

    # ---- embeddings -------------------------------------------------------------------------------------------
    def word_id(self, token: str, word: str) -> int:
        """The vocabulary id of `token` (the tokenizer's reading of the user's `word`); specials are not words."""
        token_id = self.engine.vocab.stoi.get(token)
        if token_id is None or token_id in self.special_ids:
            raise UnknownWord(
                f"word {word!r} is not in the vocabulary of {self.engine.model.family} version "
                f"{self.engine.model.version} ({len(self.engine.vocab)} tokens)"
            )
        return token_id

    def neighbors(self, token: str, word: str, k: int) -> list[tuple[str, float]]:
        """The k nearest words to `token` by cosine similarity of the input embedding (itself and the special
        tokens excluded), most similar first."""
        if self.unit_embeddings is None:
            raise InspectionUnavailable(
                f"{self.engine.model.family} version {self.engine.model.version} has no embeddings file (it was "
                "exported before inspection existed); re-export it with `python -m training.wordlm export`"
            )
        token_id = self.word_id(token, word)
        similarity = self.unit_embeddings @ self.unit_embeddings[token_id]  # (V,)
        similarity[self.special_ids] = -np.inf
        similarity[token_id] = -np.inf
        k = min(k, len(similarity) - len(self.special_ids) - 1)
        candidates = np.argpartition(-similarity, k - 1)[:k] if k > 0 else np.empty(0, np.int64)
        # Most similar first; equal similarities by vocabulary id (deterministic).
        ordered = candidates[np.lexsort((candidates, -similarity[candidates]))]
        itos = self.engine.vocab.itos
        return [(itos[i], float(similarity[i])) for i in ordered]


class InspectorCache:
    """The Inspector of the word-LM version being served, made on first use and remade after a reload serves
    another version (models are immutable, so an Inspector stays valid for its engine)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engine: WordLMEngine | None = None
        self._inspector: Inspector | None = None

    def get(self, engine: WordLMEngine) -> Inspector:
        with self._lock:
            if self._inspector is None or self._engine is not engine:
                self._inspector, self._engine = Inspector(engine), engine
            return self._inspector
