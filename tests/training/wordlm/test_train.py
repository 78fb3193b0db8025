"""Word LM training: determinism, weight averaging, the checkpoint, learnability (on the session's tiny model)."""

import dataclasses
from pathlib import Path

import pytest
import torch

from service.manifest import read_manifest
from training.data.text import load_corpus
from training.kit.checkpoint import load_checkpoint
from training.wordlm.config import TrainConfig
from training.wordlm.data import batchify
from training.wordlm.evaluate import perplexity
from training.wordlm.model import WordLMEnsemble
from training.wordlm.train import FAMILY, WeightAverage, combine, load_trained, train


def test_training_is_deterministic_with_a_seed(tiny_corpus: Path, tmp_path: Path) -> None:
    corpus = load_corpus(tiny_corpus)
    cfg = TrainConfig(
        epochs=1, batch_size=4, bptt=8, min_count=1, max_batches=5, members=1, model={"embedding": 8, "hidden": 8}
    )
    runs = [train(corpus, cfg, tmp_path / f"{i}.pt") for i in range(2)]
    assert runs[0] == runs[1]
    a, b = (load_checkpoint(tmp_path / f"{i}.pt", FAMILY).model_state for i in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_rebuilds_the_trained_model(models_dir: Path, tiny_corpus: Path) -> None:
    """The file alone gives back the model that was measured: same perplexity as the training run reported."""
    model, vocab, ckpt = load_trained(models_dir.parent / "wordlm.pt")
    assert ckpt.train_config["seed"] == 1111 and len(ckpt.history) == ckpt.epoch == 3
    assert ckpt.best_metric == min(h["valid_perplexity"] for h in ckpt.history)
    assert len(vocab) == model.config.vocab_size == ckpt.model_config["vocab_size"]
    assert not model.training
    corpus = load_corpus(tiny_corpus, eos="line")
    valid = batchify(vocab.encode(corpus.valid), ckpt.train_config["eval_batch_size"])
    assert perplexity(model, valid) == pytest.approx(ckpt.extra["metrics"]["valid_perplexity"], rel=1e-6)


def test_tiny_model_learns_the_tiny_corpus(models_dir: Path) -> None:
    """Three epochs on a repetitive corpus must do far better than a uniform guess over the vocabulary."""
    manifest = read_manifest(models_dir / "wordlm" / "1")
    assert manifest.metrics["model"]["valid_perplexity"] < manifest.tokenizer.vocab_size / 3


def test_weight_average_is_the_mean_of_the_steps_and_swaps_back() -> None:
    model = torch.nn.Linear(3, 2)
    seen = []
    average = WeightAverage(model)
    seen.append(model.weight.detach().clone())
    for _ in range(4):
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        average.update()
        seen.append(model.weight.detach().clone())
    own = model.weight.detach().clone()
    with average.swapped_in():
        torch.testing.assert_close(model.weight.detach(), torch.stack(seen).mean(0))
    assert torch.equal(model.weight.detach(), own)


def test_an_ensemble_averages_its_members_distributions(tiny_corpus: Path, tmp_path: Path) -> None:
    """Members from seeds seed, seed+1; the ensemble's state stacks their layers; its probabilities are their mean."""
    corpus = load_corpus(tiny_corpus)
    cfg = TrainConfig(
        epochs=1, batch_size=4, bptt=8, min_count=1, max_batches=3, members=2, workers=1,
        model={"embedding": 8, "hidden": 8},
    )  # fmt: skip
    metrics = train(corpus, cfg, tmp_path / "e.pt")
    ensemble, vocab, ckpt = load_trained(tmp_path / "e.pt")
    assert isinstance(ensemble, WordLMEnsemble) and ckpt.extra["members"] == 2
    assert [run["seed"] for run in ckpt.extra["member_runs"]] == [1111, 1112]
    for seed in (1111, 1112):
        single = train(corpus, dataclasses.replace(cfg, members=1, seed=seed), tmp_path / f"{seed}.pt")
        assert ckpt.extra["member_runs"][seed - 1111]["metrics"] == single  # a member is what its seed trains alone
    # Members trained apart and combined give the same ensemble.
    assert combine(corpus, [tmp_path / "1111.pt", tmp_path / "1112.pt"], tmp_path / "c.pt") == metrics
    tokens = torch.tensor([vocab.encode(["the", "cat", "sat"])])
    h0, c0 = ensemble.init_state(1)
    assert h0.shape == (4, 1, 8)
    with torch.no_grad():
        log_probs, (h, _) = ensemble(tokens, (h0, c0))
        mean = sum(torch.softmax(m(tokens, (h0[2 * k : 2 * k + 2], c0[2 * k : 2 * k + 2]))[0], -1)
                   for k, m in enumerate(ensemble.members)) / 2  # fmt: skip
    torch.testing.assert_close(log_probs.exp(), mean)
    assert h.shape == (4, 1, 8)
    valid = batchify(vocab.encode(corpus.valid), cfg.eval_batch_size)
    assert perplexity(ensemble, valid) == pytest.approx(metrics["valid_perplexity"], rel=1e-6)
