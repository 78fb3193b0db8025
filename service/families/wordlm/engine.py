"""Word language model engine: prefill a prompt in one ONNX call, then one call per new token carrying (h, c).

Never re-feed the prefix: the cost of a token stays constant however long the text grows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...family import State
from ...registry import LoadedModel
from ...sampling import Sampler, SamplingParams, softmax
from ...tokenizer import EOS, Detokenizer, Vocab, tokenize

NAME = "wordlm"


@dataclass
class EncodedText:
    tokens: list[str]
    ids: list[int]
    unknown: int


@dataclass
class Generation:
    """One sequence being generated: sampler, detokenizer, text so far and the rules that end it.

    `advance(logits)` consumes the model's distribution for the next position and returns the text that is now
    safe to show (a tail that could still become a stop string is held back until it cannot); once
    `finish_reason` is set the returned piece flushes everything left. Otherwise the caller feeds `last_id` to
    the model next. The token sampled last is never fed here: a session keeps it as its pending token.
    """

    sampler: Sampler
    detokenizer: Detokenizer
    max_new_tokens: int
    eos_id: int
    itos: list[str]
    banned_ids: list[int]
    stop: tuple[str, ...] = ()
    text: str = ""
    completion_tokens: int = 0
    last_id: int = -1
    finish_reason: str | None = None
    emitted: int = field(default=0, repr=False)  # how much of `text` has been handed out

    def mask(self, logits: np.ndarray) -> None:
        """In place, on this sequence's row of fresh model output: never write "<unk>" (nor "<eos>" when told to
        ignore it)."""
        logits[self.banned_ids] = -np.inf

    def advance(self, logits: np.ndarray) -> str:
        """Sample from one row of logits (V,) and accept the token."""
        logits = logits.copy()
        self.mask(logits)
        return self.accept(self.sampler.sample(logits))

    def accept(self, token_id: int) -> str:
        """Take the sampled token; returns the text now safe to show."""
        self.last_id = token_id
        self.completion_tokens += 1
        if token_id == self.eos_id:
            self.finish_reason = "eos"
        else:
            piece = self.detokenizer.feed(self.itos[token_id])
            self.text += piece
            if self.stop:
                self._check_stop(len(piece))
            if self.finish_reason is None and self.completion_tokens >= self.max_new_tokens:
                self.finish_reason = "length"
        safe = len(self.text) if self.finish_reason else len(self.text) - self._held_back()
        piece, self.emitted = self.text[self.emitted : safe], max(self.emitted, safe)
        return piece

    def _check_stop(self, new_chars: int) -> None:
        # Only the tail that can hold a new match is scanned: the cost per token does not grow with the text.
        start = max(0, len(self.text) - new_chars - max(map(len, self.stop)) + 1)
        hits = [i for s in self.stop if (i := self.text.find(s, start)) >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self.finish_reason = "stop"

    def _held_back(self) -> int:
        """Length of the longest tail of the text that is the start of a stop string."""
        if not self.stop:
            return 0
        longest = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(self.text)), longest, -1):
                if self.text.endswith(s[:n]):
                    longest = n
                    break
        return longest


class WordLMEngine:
    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        manifest = model.manifest
        assert manifest.tokenizer is not None, "a word LM needs a tokenizer"
        self.session = model.sessions["step"]
        self.layers: int = manifest.config["layers"]
        self.hidden: int = manifest.config["hidden"]
        self.vocab = Vocab.load(model.directory / manifest.tokenizer.vocab_file)
        self.eos_mode = manifest.tokenizer.eos  # where the model learnt <eos>: prompts are read and text written so
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
        tokens = tokenize(text, eos=self.eos_mode)
        ids = self.vocab.encode(tokens)
        return EncodedText(tokens=tokens, ids=ids, unknown=sum(i == self.vocab.unk_id for i in ids))

    def new_generation(
        self,
        params: SamplingParams,
        max_new_tokens: int,
        stop: tuple[str, ...] = (),
        ignore_eos: bool = False,
        sampler: Sampler | None = None,
        detokenizer: Detokenizer | None = None,
    ) -> Generation:
        """A generation; pass a session's sampler and detokenizer to continue its text exactly."""
        return Generation(
            sampler=sampler or Sampler(params, None),
            detokenizer=detokenizer or Detokenizer(self.eos_mode),
            max_new_tokens=max_new_tokens,
            eos_id=self.eos_id,
            itos=self.vocab.itos,
            stop=stop,
            banned_ids=[self.vocab.unk_id, self.eos_id] if ignore_eos else [self.vocab.unk_id],
        )

    def next_words(self, prompt: EncodedText, k: int) -> list[tuple[str, float]]:
        """The k most likely next words (specials excluded; probabilities are not renormalised)."""
        logits, _ = self.prefill(prompt.ids)
        probs = softmax(logits)
        probs[self.special_ids] = -1.0
        top = np.argsort(-probs, kind="stable")[:k]
        return [(self.vocab.itos[i], float(probs[i])) for i in top]
