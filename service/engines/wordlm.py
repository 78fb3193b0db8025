"""Word language model engine: prefill a prompt in one ONNX call, then one call per new token carrying (h, c).

Never re-feed the prefix: the cost of a token stays constant however long the text grows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..registry import LoadedModel
from ..sampling import Sampler, SamplingParams, softmax
from ..tokenizer import EOS, Detokenizer, Vocab, tokenize

State = tuple[np.ndarray, np.ndarray]  # (h, c), each float32 (layers, B, hidden)


@dataclass
class EncodedText:
    tokens: list[str]
    ids: list[int]
    unknown: int


@dataclass
class Generation:
    """One sequence being generated: sampler, detokenizer, text so far and the rules that end it.

    `advance(logits)` consumes the model's distribution for the next position and returns the new text piece;
    the caller then feeds `last_id` to the model (unless `finish_reason` is set).
    """

    sampler: Sampler
    detokenizer: Detokenizer
    max_new_tokens: int
    eos_id: int
    itos: list[str]
    banned_ids: list[int]
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    text: str = ""
    completion_tokens: int = 0
    last_id: int = -1
    finish_reason: str | None = None
    _stop_scan_from: int = field(default=0, repr=False)

    def advance(self, logits: np.ndarray) -> str:
        logits = logits.copy()
        logits[self.banned_ids] = -np.inf  # never write "<unk>" (nor "<eos>" when told to ignore it)
        token_id = self.sampler.sample(logits)
        self.last_id = token_id
        self.completion_tokens += 1
        if token_id == self.eos_id and not self.ignore_eos:
            self.finish_reason = "eos"
            return ""
        piece = self.detokenizer.feed(self.itos[token_id])
        self.text += piece
        if self.stop and self._hit_stop(piece):
            return ""  # the caller reads the truncated self.text
        if self.completion_tokens >= self.max_new_tokens:
            self.finish_reason = "length"
        return piece

    def _hit_stop(self, piece: str) -> bool:
        # Only the tail that can contain a new match is scanned: cost per token does not grow with the text.
        longest = max(len(s) for s in self.stop)
        start = max(0, len(self.text) - len(piece) - longest + 1)
        hits = [i for s in self.stop if (i := self.text.find(s, start)) >= 0]
        if not hits:
            return False
        self.text = self.text[: min(hits)]
        self.finish_reason = "stop"
        return True


@dataclass
class GenerationResult:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    unknown_tokens: int


class WordLMEngine:
    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        manifest = model.manifest
        assert manifest.tokenizer is not None, "a word LM needs a tokenizer"
        self.session = model.sessions["step"]
        self.layers: int = manifest.config["layers"]
        self.hidden: int = manifest.config["hidden"]
        self.vocab = Vocab.load(model.directory / manifest.tokenizer.vocab_file)
        self.eos_id = self.vocab.stoi[EOS]
        self.special_ids = np.array([self.eos_id, self.vocab.unk_id])

    # ---- the model: two calls ------------------------------------------------------------------------------------
    def zero_state(self, batch: int = 1) -> State:
        zeros = np.zeros((self.layers, batch, self.hidden), dtype=np.float32)
        return zeros, zeros.copy()

    def run(self, tokens: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """tokens (B, T) int64 + state -> logits (B, T, V) float32, new state."""
        logits, h, c = self.session.run(None, {"tokens": tokens, "h0": state[0], "c0": state[1]})
        return logits, (h, c)

    def prefill(self, ids: list[int], state: State | None = None) -> tuple[np.ndarray, State]:
        """Read a whole prompt in one call: logits for the next token (V,) and the state after it."""
        logits, state = self.run(np.asarray([ids], dtype=np.int64), state or self.zero_state())
        return logits[0, -1], state

    # ---- text -------------------------------------------------------------------------------------------------
    def encode(self, text: str) -> EncodedText:
        tokens = tokenize(text)
        ids = self.vocab.encode(tokens)
        return EncodedText(tokens=tokens, ids=ids, unknown=sum(i == self.vocab.unk_id for i in ids))

    def new_generation(
        self,
        prompt: EncodedText,
        params: SamplingParams,
        seed: int | None,
        max_new_tokens: int,
        stop: tuple[str, ...] = (),
        ignore_eos: bool = False,
    ) -> Generation:
        detokenizer = Detokenizer()
        detokenizer.prime(prompt.tokens)  # quote state and capitalisation continue from the prompt
        return Generation(
            sampler=Sampler(params, seed),
            detokenizer=detokenizer,
            max_new_tokens=max_new_tokens,
            eos_id=self.eos_id,
            itos=self.vocab.itos,
            stop=stop,
            ignore_eos=ignore_eos,
            banned_ids=[self.vocab.unk_id, self.eos_id] if ignore_eos else [self.vocab.unk_id],
        )

    def generate(
        self,
        prompt: EncodedText,
        params: SamplingParams,
        seed: int | None,
        max_new_tokens: int,
        stop: tuple[str, ...] = (),
        ignore_eos: bool = False,
    ) -> GenerationResult:
        generation = self.new_generation(prompt, params, seed, max_new_tokens, stop, ignore_eos)
        next_logits, state = self.prefill(prompt.ids)
        step_input = np.empty((1, 1), dtype=np.int64)
        while True:
            generation.advance(next_logits)
            if generation.finish_reason is not None:
                break
            step_input[0, 0] = generation.last_id
            logits, state = self.run(step_input, state)
            next_logits = logits[0, 0]
        return GenerationResult(
            text=generation.text,
            finish_reason=generation.finish_reason,
            prompt_tokens=len(prompt.ids),
            completion_tokens=generation.completion_tokens,
            unknown_tokens=prompt.unknown,
        )

    def next_words(self, prompt: EncodedText, k: int) -> list[tuple[str, float]]:
        """The k most likely next words (specials excluded; probabilities are not renormalised)."""
        logits, _ = self.prefill(prompt.ids)
        probs = softmax(logits)
        probs[self.special_ids] = -1.0
        top = np.argsort(-probs, kind="stable")[:k]
        return [(self.vocab.itos[i], float(probs[i])) for i in top]
