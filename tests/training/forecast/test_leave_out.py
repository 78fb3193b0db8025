"""Leave-collection-out: each block's model is trained without a point of the block, then scored on the block's test
horizons with the baselines beside it, per block and per frequency; --reuse scores a checkpoint again untrained."""

from dataclasses import replace
from pathlib import Path

import pytest

import training.forecast.leave_out as leave_out
from tests.fixtures_forecast import tiny_series
from tests.torch_threads import one_torch_thread
from training.data.series import Series, SeriesSet, series_digest
from training.forecast.config import TrainConfig

TINY = TrainConfig(members=1, steps=40, batch_size=16, hidden=8, layers=1, max_context=48, max_horizon=24,
                   synthetic_series=0, eval_every=20, warmup=5, grad_context=24)  # fmt: skip


def _two_blocks() -> SeriesSet:
    base = tiny_series(count=6, constants=0).series
    series = [replace(s, name=f"{'fpp2' if i % 2 else 'fpp3'}/{s.name}") for i, s in enumerate(base)]
    return SeriesSet(series=series, source="test", sha256=series_digest(series))


@pytest.mark.slow  # ~12 s: two tiny trainings and ETS/Theta fits per series
def test_each_block_is_scored_by_a_model_that_never_saw_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _two_blocks()
    trained_on: dict[str, list[str]] = {}
    real_train = leave_out.train

    def spy(subset: SeriesSet, cfg: TrainConfig, checkpoint: Path) -> object:
        trained_on[checkpoint.name] = [s.name for s in subset.series]
        assert not cfg.baselines  # the baselines come from the cache, fitted per series
        return real_train(subset, cfg, checkpoint)

    monkeypatch.setattr(leave_out, "train", spy)
    with one_torch_thread():
        results = leave_out.leave_collection_out(data, TINY, ("fpp2", "fpp3"), tmp_path / "cache", tmp_path)
    for block in ("fpp2", "fpp3"):
        names = trained_on[f"leave-out-{block}.pt"]
        assert names and not any(n.startswith(f"{block}/") for n in names)  # not a point of the block
        held = [s for s in data.series if s.collection == block]
        summary = results[block]["summary"]
        assert summary["series"] == len(held) == len(results[block]["per_series"])
        assert summary["lstm_mase"] > 0 and summary["naive_mase"] > 0 and summary["ets_mase"] > 0
        assert summary["compared_vs_ets"] == len(held)
        assert set(results[block]["by_frequency"]) == {"synthetic"}
    table = (tmp_path / "leave-out.md").read_text()
    assert "| fpp2 | 3 |" in table and "Left out fpp3, by frequency" in table

    trained_on.clear()  # --reuse: the checkpoints are scored again, nothing is trained
    with one_torch_thread():
        again = leave_out.leave_collection_out(data, TINY, ("fpp2",), tmp_path / "cache", tmp_path, reuse=True)
    assert trained_on == {} and again["fpp2"]["summary"] == results["fpp2"]["summary"]


def test_series_names_give_their_block() -> None:
    s = tiny_series(count=1, constants=0).series[0]
    assert replace(s, name="fpp3/us_employment/CEU1").collection == "us_employment"
    assert replace(s, name="fpp3/aus_retail/x").collection == "fpp3"
    assert isinstance(s, Series)
