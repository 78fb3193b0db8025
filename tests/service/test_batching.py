"""Continuous batching and streaming: results equal the same request run alone; disconnects free the slot."""

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.batching import DecodeBatch, GenerationJob, MicroBatcher, PrefillCost
from service.config import Settings
from service.families.wordlm.engine import Generation as WordGeneration
from service.families.wordlm.engine import WordLMEngine
from service.families.wordlm.service import Generation
from service.sampling import Sampler, SamplingParams
from tests.app_state import runtime_of

REQUESTS = [
    {"prompt": p, "max_new_tokens": n, "temperature": t, "seed": s, "ignore_eos": True}
    for p, n, t, s in [
        ("the cat sat on the", 40, 0.0, None),
        ("alice said", 25, 1.0, 1),
        ("a white rabbit", 60, 0.8, 2),
        ("the queen said to the king", 33, 1.2, 3),
        ("she was not", 12, 1.0, 4),
        ("the dog", 50, 0.0, None),
        ("what is the use of a book", 45, 1.0, 5),
        ("the river bank", 20, 0.5, 6),
    ]
]


def parse_sse(raw: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


@pytest.fixture(scope="module")
def alone(models_dir: Path) -> list[str]:
    """Each request run on its own, with batching off."""
    with TestClient(create_app(Settings(models_dir=models_dir, batching=False))) as c:
        return [c.post("/generate", json=r).json()["text"] for r in REQUESTS]


def test_concurrent_requests_are_batched_and_each_equals_its_run_alone(client: TestClient, alone: list[str]) -> None:
    batcher = runtime_of(client).batchers[("wordlm", 1)]
    before = _prompts_read(client)
    with ThreadPoolExecutor(len(REQUESTS)) as pool:
        texts = list(pool.map(lambda r: client.post("/generate", json=r).json()["text"], REQUESTS * 3))
    assert texts == alone * 3  # whether each prompt was prefilled or rode along (float32: the same bits)
    assert batcher.max_active > 1, "concurrent requests were never stepped together"
    after = _prompts_read(client)
    assert sum(after.values()) - sum(before.values()) == len(texts)


def test_stream_sends_token_events_then_done(client: TestClient) -> None:
    body = {**REQUESTS[1], "stop": ["the"]}
    whole = client.post("/generate", json=body).json()
    with client.stream("POST", "/generate/stream", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(response.read().decode())
    *tokens, (last_kind, done) = events
    assert {kind for kind, _ in tokens} == {"token"} and last_kind == "done"
    assert "".join(data["text"] for _, data in tokens) == whole["text"]  # stop-string text is never streamed
    assert done["finish_reason"] == whole["finish_reason"] and done["usage"] == whole["usage"]


def test_disconnecting_stream_frees_its_batch_slot(client: TestClient) -> None:
    batcher = runtime_of(client).batchers[("wordlm", 1)]
    body = {"prompt": "the cat", "max_new_tokens": 1024, "ignore_eos": True}
    with client.stream("POST", "/generate/stream", json=body) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("event: token")
    deadline = time.monotonic() + 5
    while batcher.active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batcher.active == 0


def test_streaming_on_a_session_then_continuing_it(client: TestClient) -> None:
    sid = client.post("/sessions", json={"model": "wordlm"}).json()["session_id"]
    body = {"session_id": sid, "prompt": "the cat", "max_new_tokens": 6, "temperature": 0, "ignore_eos": True}
    with client.stream("POST", "/generate/stream", json=body) as response:
        events = parse_sse(response.read().decode())
    streamed = "".join(d["text"] for kind, d in events if kind == "token")
    rest = client.post("/generate", json={"session_id": sid, "max_new_tokens": 6, "temperature": 0, "ignore_eos": True})
    whole = client.post("/generate", json={**body, "session_id": None, "max_new_tokens": 12})
    assert streamed + rest.json()["text"] == whole.json()["text"]


def test_micro_batcher_groups_requests_and_keeps_order() -> None:
    calls: list[int] = []

    def double(items: list[int]) -> list[int]:
        calls.append(len(items))
        return [2 * i for i in items]

    micro: MicroBatcher[int, int] = MicroBatcher("test", double, max_items=100, max_wait=0.05)
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda k: micro.run([k, k + 100]), range(8)))
        assert results == [[2 * k, 2 * (k + 100)] for k in range(8)]
        assert sum(calls) == 16 and len(calls) < 8
    finally:
        micro.close()


def test_a_full_one_shot_queue_refuses_before_reading_the_body(sentiment_models_dir: Path) -> None:
    """When the micro-batcher's queue is full, /sentiment answers 503 + Retry-After at once: even a body that is not
    JSON is never read (a flood is refused at the door, not after parsing 256 texts per request)."""
    with TestClient(create_app(Settings(models_dir=sentiment_models_dir, microbatch_max_queue_items=4))) as c:
        micro = runtime_of(c).microbatchers[("sentiment", 1)]
        micro._waiting = 4  # the queue is full (as if four texts were waiting)
        refused = c.post("/sentiment", content=b"not json", headers={"content-type": "application/json"})
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert refused.json()["error"] == "overloaded" and "sentiment" in refused.json()["message"]
        micro._waiting = 0
        assert c.post("/sentiment", json={"texts": ["good"]}).status_code == 200


class _Blocker:
    """A sequence whose first token waits for a gate: while it waits, the decoding thread admits nobody else."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate
        self.sampler = Sampler(SamplingParams(), 0)
        self.last_id, self.completion_tokens = 0, 0
        self.finish_reason: str | None = None

    def advance(self, logits: Any) -> str:
        self.gate.wait(10)
        self.finish_reason = "length"
        return ""

    def mask(self, logits: Any) -> None:
        pass

    def accept(self, token_id: int) -> str:
        return ""


def test_a_generation_without_a_slot_in_time_is_answered_503_and_leaves_the_queue(models_dir: Path) -> None:
    """CELLSTATE_BATCH_MAX_QUEUE_WAIT_S: a request still queued at its deadline gets 503 + Retry-After (an in-band
    `overloaded` error event when streamed), its session is released unchanged, and it never runs afterwards."""
    settings = Settings(models_dir=models_dir, batch_max_size=1, batch_max_queue_wait_s=0.3)
    with TestClient(create_app(settings)) as c:
        sid = c.post("/sessions", json={"model": "wordlm"}).json()["session_id"]
        batcher = runtime_of(c).batchers[("wordlm", 1)]
        gate = threading.Event()
        blocker = GenerationJob(_Blocker(gate), feed_ids=[1])
        batcher.submit(blocker)
        try:
            started = time.monotonic()
            refused = c.post("/generate", json={"prompt": "the cat", "max_new_tokens": 3, "session_id": sid})
            waited = time.monotonic() - started
            assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["error"] == "overloaded"
            assert "CELLSTATE_BATCH_MAX_QUEUE_WAIT_S" in refused.json()["message"]
            assert 0.3 <= waited < 3
            with c.stream("POST", "/generate/stream", json={"prompt": "the cat", "max_new_tokens": 3}) as stream:
                events = "".join(stream.iter_text())
            assert stream.status_code == 200 and "event: token" not in events
            assert 'event: error\ndata: {"error": "overloaded"' in events
        finally:
            gate.set()
        assert blocker.done.wait(5)
        after = c.post("/generate", json={"prompt": "the cat", "max_new_tokens": 3, "session_id": sid})
        assert after.status_code == 200  # the session was released, and is where it was: this is its first text
        assert after.json()["usage"]["prompt_tokens"] == 2
        metrics = c.get("/metrics").text
        assert 'cellstate_generations_withdrawn_total{family="wordlm"} 2.0' in metrics


def wordlm_engine(client: TestClient) -> WordLMEngine:
    engine = runtime_of(client).current["wordlm"]
    assert isinstance(engine, WordLMEngine)
    return engine


def text_of(job: GenerationJob) -> str:
    assert isinstance(job.generation, WordGeneration)
    return job.generation.text


# ---- prompts that ride along: read in the batch, one token per step, instead of a prefill call ----------------
def _decode(
    engine: WordLMEngine, plan: list[tuple[dict[str, Any], bool | None]], join_after: int = 3
) -> list[GenerationJob]:
    """Run REQUESTS-like jobs through one DecodeBatch: the first joins alone, the others `join_after` steps apart
    (so they meet a batch that is decoding), each admitted with its `ride_along` choice. Every other job continues
    a state, as a session's call does (the same state on every run)."""
    jobs = []
    for i, (body, _) in enumerate(plan):
        params = SamplingParams(temperature=body["temperature"])
        generation = engine.new_generation(params, body["max_new_tokens"], ignore_eos=True,
                                           sampler=Sampler(params, body["seed"]))  # fmt: skip
        state = None
        if i % 2:
            rng = np.random.default_rng(i)
            h, c = (rng.normal(0, 0.3, (engine.layers, 1, engine.hidden)) for _ in range(2))
            state = (h.astype(np.float32), c.astype(np.float32))
        jobs.append(GenerationJob(generation, engine.encode(body["prompt"]).ids, state=state))
    batch = DecodeBatch(engine)
    for job, (_, ride_along) in zip(jobs, plan, strict=True):
        batch.admit(job, ride_along)
        for _ in range(join_after):
            batch.step()
    while batch:
        batch.step()
    assert all(job.done.is_set() and job.error is None for job in jobs)
    return jobs


def test_a_prompt_read_in_the_batch_gives_what_its_prefill_gives(client: TestClient) -> None:
    """Riding along changes when a prompt is read, not what comes of it: the same texts, token counts and final
    states as prefill calls (float32: the same bits), whatever else is in the batch meanwhile."""
    engine = wordlm_engine(client)
    prefilled = _decode(engine, [(r, False) for r in REQUESTS])
    riding = _decode(engine, [(r, i > 0) for i, r in enumerate(REQUESTS)])  # all but the first ride along
    assert [text_of(j) for j in riding] == [text_of(j) for j in prefilled]
    assert [j.generation.completion_tokens for j in riding] == [r["max_new_tokens"] for r in REQUESTS]
    for a, b in zip(riding, prefilled, strict=True):
        assert a.final_state is not None and b.final_state is not None
        np.testing.assert_array_equal(a.final_state[0], b.final_state[0])
        np.testing.assert_array_equal(a.final_state[1], b.final_state[1])


def test_a_sequence_cancelled_while_reading_its_prompt_ends_with_the_state_it_came_with(client: TestClient) -> None:
    engine = wordlm_engine(client)
    first, second = (engine.new_generation(SamplingParams(0.0), 20, ignore_eos=True) for _ in range(2))
    batch = DecodeBatch(engine)
    batch.admit(GenerationJob(first, engine.encode("the cat sat").ids))
    came_with = engine.zero_state()
    came_with[0][:] = 0.5
    reading = GenerationJob(second, engine.encode("the queen said to the king that").ids, state=came_with)
    batch.admit(reading, ride_along=True)
    batch.step()
    batch.step()
    assert reading.reading and reading.fed == 2
    reading.cancelled = True
    batch.step()
    assert reading.done.is_set() and reading.final_state is came_with and second.completion_tokens == 0
    assert len(batch) == 1


def test_a_prompt_rides_along_when_that_delays_everybody_less_than_a_prefill(client: TestClient) -> None:
    """The choice uses the costs the batch measured: (B + 1) x prefill(T) against 2 x T x (one step)."""
    engine = wordlm_engine(client)
    batch = DecodeBatch(engine)
    assert not batch.rides_along(5)  # an idle batch: prefill, for the fastest first token
    for n in (3, 9, 5, 12):
        batch.admit(GenerationJob(engine.new_generation(SamplingParams(0.0), 50, ignore_eos=True), [3] * n))
    batch.step()
    assert batch.step_s is not None and batch.prefill_cost.estimate(10) is not None  # measured as it ran
    batch.prefill_cost = PrefillCost()
    for tokens in (1, 10, 20, 40):  # a prefill: 2 ms + 0.4 ms a token
        batch.prefill_cost.observe(tokens, 0.002 + 0.0004 * tokens)
    assert batch.prefill_cost.estimate(30) == pytest.approx(0.014)
    batch.step_s = 0.004  # 4 sequences decoding
    assert batch.rides_along(1)  # riding: 2 x 1 x 4 ms = 8 ms; a prefill: 5 x 2.4 ms = 12 ms
    assert not batch.rides_along(10)  # riding: 2 x 10 x 4 ms = 80 ms; a prefill: 5 x 6 ms = 30 ms
    batch.step_s = 0.0005
    assert batch.rides_along(10)  # riding: 2 x 10 x 0.5 ms = 10 ms
    batch.ride_along = False  # CELLSTATE_BATCH_RIDE_ALONG=false: always prefill
    assert not batch.rides_along(10)


def _prompts_read(c: TestClient) -> dict[str, float]:
    lines = [
        line.split() for line in c.get("/metrics").text.splitlines() if line.startswith("cellstate_prompts_read_total{")
    ]
    return {how: sum(float(v) for k, v in lines if f'how="{how}"' in k) for how in ("prefill", "in_batch")}


def test_ride_along_can_be_switched_off_and_every_prompt_is_counted(models_dir: Path) -> None:
    """CELLSTATE_BATCH_RIDE_ALONG=false: a busy batch still prefills every prompt; cellstate_prompts_read_total
    counts each prompt read, by how."""
    with TestClient(create_app(Settings(models_dir=models_dir, batch_ride_along=False))) as c:
        assert not runtime_of(c).batchers[("wordlm", 1)].ride_along
        before = _prompts_read(c)
        with ThreadPoolExecutor(len(REQUESTS)) as pool:
            codes = list(pool.map(lambda r: c.post("/generate", json=r).status_code, REQUESTS * 2))
        after = _prompts_read(c)
    assert codes == [200] * len(codes)
    assert after["prefill"] - before["prefill"] == len(codes) and after["in_batch"] == before["in_batch"]


def test_a_stream_that_falls_behind_gets_the_waiting_pieces_in_one_write(client: TestClient) -> None:
    """Generation.pieces(): one piece at a time while the reader keeps up; every piece already waiting at once when
    it is behind (one SSE write for several token events), and nothing lost or repeated at the end."""
    runtime = runtime_of(client)
    engine = wordlm_engine(client)
    job = GenerationJob(engine.new_generation(SamplingParams(0.0), 5), [3], admitted=True)

    async def read() -> list[list[str]]:
        gen = Generation(runtime, engine, job, None, None, None)
        for piece in ("a", " b", " c"):
            gen._pieces.put_nowait(piece)
        groups = []
        async for group in gen.pieces():
            groups.append(group)
            if len(groups) == 1:
                gen._pieces.put_nowait(" d")
            elif len(groups) == 2:
                gen._pieces.put_nowait(" e")
                gen._pieces.put_nowait(None)
        return groups

    assert asyncio.run(read()) == [["a", " b", " c"], [" d"], [" e"]]
