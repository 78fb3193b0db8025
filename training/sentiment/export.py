"""Export the ensemble as a model version: one ONNX graph averaging the members' probabilities (float16-stored
weights by default), checked for parity with PyTorch and for padding invariance before anything is written; every
metric is measured on the file that is served, beside the baselines'."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.tokenizer import PAD, UNK
from training.baselines_sentiment import classification_metrics
from training.data.archives import DEFAULT_CACHE
from training.data.sentiment import DEFAULT_LABELS, Example, SentimentData, load_minimal_pairs
from training.kit.checkpoint import Checkpoint
from training.kit.export import (
    DataSpec,
    ParityError,
    TokenizerSpec,
    check_parity,
    export_onnx,
    graph_spec,
    ort_session,
    publish_version,
    round_weights_to_fp16,
    store_weights_as_fp16,
)
from training.kit.plots import curve_figure
from training.kit.quantize import Tolerance, add_variant, default_precision, int8_variant
from training.sentiment.encoding import build_vocab, encode, padded_case, unk_rate
from training.sentiment.evaluate import (
    evaluate_baselines,
    expected_calibration_error,
    fit_temperature,
    minimal_pair_scores,
    negative_log_likelihood,
    onnx_probs,
    predict_probs,
    temperature_scaled,
)
from training.sentiment.model import SentimentConfig, SentimentProbs
from training.sentiment.train import FAMILY, load_trained

log = logging.getLogger(__name__)

PARITY_ATOL = 1e-5
INVARIANCE_ATOL = 1e-5
INPUTS = ["tokens", "lengths"]
OUTPUTS = ["probs"]
DYNAMIC_AXES = {"tokens": {0: "batch", 1: "seq"}, "lengths": {0: "batch"}, "probs": {0: "batch"}}


def parity_cases(vocab_size: int, max_tokens: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Padded batches of mixed lengths, always including length 1 and the maximum length, plus batch 1 alone."""
    rng = np.random.default_rng(seed)

    def seq(n: int) -> list[int]:
        return rng.integers(1, vocab_size, size=n).tolist()  # ids >= 1: real tokens, never <pad>

    mixed = [seq(n) for n in (1, max_tokens, 7, 2, 23, 1, 64 if max_tokens > 64 else max_tokens // 2 or 1)]
    return [
        padded_case([seq(1)]),
        padded_case([seq(max_tokens)]),
        padded_case(mixed),
        padded_case([seq(int(n)) for n in rng.integers(1, min(max_tokens, 40) + 1, size=16)]),
    ]


TOLERANCE = Tolerance("test_accuracy", 0.005, "absolute")  # int8 may cost at most half a point of test accuracy


def int8(version_dir: Path, data: SentimentData, vocab: Any, max_tokens: int) -> Any:
    """The int8 variant of the classifier graph: its accuracy on every test split next to the float32 graph's,
    both from onnxruntime on the same texts."""
    splits = {"test": list(data.test)} | {
        f"test_{d}": [e for e in data.test if e.domain == d] for d in data.domains() if d and len(data.domains()) > 1
    }
    encoded = {name: encode(rows, vocab, max_tokens) for name, rows in splits.items()}

    def quality(path: Path) -> dict[str, Any]:
        return {f"{name}_accuracy": float((onnx_probs(path, e.ids).argmax(1) == e.labels).mean())
                for name, e in encoded.items()}  # fmt: skip

    fp32 = quality(version_dir / "model.onnx")
    rng = np.random.default_rng(1)
    speed = {b: padded_case([rng.integers(1, len(vocab), size=int(n)).tolist() for n in rng.integers(4, 33, size=b)])
             for b in (1, 64)}  # fmt: skip
    cases = parity_cases(len(vocab), max_tokens)
    variant = int8_variant(version_dir, {"classify": "model.onnx"}, quality, fp32, TOLERANCE, cases, speed)
    variant.metrics["fp32_onnxruntime"] = fp32
    return variant


def quantize(version_dir: Path, data: SentimentData) -> Path:
    """Add the int8 variant to a published version (`python -m training.sentiment quantize`)."""
    from service.manifest import read_manifest
    from service.tokenizer import Vocab

    manifest = read_manifest(version_dir)
    assert manifest.tokenizer is not None
    if data.sha256 != manifest.data.sha256 or data.split.get("ids_sha256") != manifest.data.splits.get("ids_sha256"):
        raise ValueError(f"the data or its split differs from the one {version_dir} was trained on")
    vocab = Vocab.load(version_dir / manifest.tokenizer.vocab_file)
    add_variant(version_dir, "int8", int8(version_dir, data, vocab, int(manifest.config["max_tokens"])))
    return version_dir


def check_padding_invariance(path: Path, cases: Sequence[dict[str, np.ndarray]], atol: float) -> float:
    """Each text's probabilities alone (unpadded, batch 1) == its row inside the padded batch. Returns max |diff|."""
    session = ort_session(path)
    worst = 0.0
    for feeds in cases:
        batched = session.run(None, feeds)[0]
        for i, n in enumerate(feeds["lengths"]):
            alone_feeds = {"tokens": feeds["tokens"][i : i + 1, :n], "lengths": feeds["lengths"][i : i + 1]}
            alone = session.run(None, alone_feeds)
            diff = float(np.max(np.abs(alone[0][0] - batched[i])))
            worst = max(worst, diff)
            if not diff <= atol:
                raise ParityError(
                    f"padding changes row {i} (length {n}) of a batch {feeds['tokens'].shape}: "
                    f"max |diff| {diff:.3g} > {atol:g}"
                )
    log.info("padding invariance ok: max |diff| %.3g (limit %g)", worst, atol)
    return worst


def encode_texts(texts: Sequence[str], vocab: Any, max_tokens: int) -> list[list[int]]:
    return encode([Example(id=str(i), text=t, label=0) for i, t in enumerate(texts)], vocab, max_tokens).ids


def fitted_temperature(ensemble: SentimentProbs, valid: Any) -> dict[str, Any]:
    """Temperature scaling (Guo et al., 2017) fitted on the validation split: NLL and ECE there with and without.
    `used` says whether it lowered both."""
    ensemble.temperature = 1.0
    probs = predict_probs(ensemble, valid.ids)
    t = fit_temperature(probs, valid.labels)
    scaled = temperature_scaled(probs, t)
    record: dict[str, Any] = {
        "method": "temperature scaling of the averaged probabilities, softmax(log p / T), T fitted on valid (NLL)",
        "temperature": round(t, 4),
        "valid_nll": {
            "before": negative_log_likelihood(probs, valid.labels),
            "after": negative_log_likelihood(scaled, valid.labels),
        },
        "valid_ece": {
            "before": expected_calibration_error(probs, valid.labels),
            "after": expected_calibration_error(scaled, valid.labels),
        },
    }
    record["used"] = bool(
        record["valid_nll"]["after"] < record["valid_nll"]["before"]
        and record["valid_ece"]["after"] < record["valid_ece"]["before"]
    )
    if record["used"]:
        record["temperature"] = t  # the exact value folded into the graph
    log.info("calibration: %s", record)
    return record


def save_training_curve(ckpt: Checkpoint, baseline_valid: float | None, path: Path) -> None:
    title, xlabel = "sentiment BiLSTM fine-tuning", "fine-tuning epoch (dotted: train accuracy, with dropout)"
    with curve_figure(path, title, xlabel, "accuracy", legend_size=8) as ax:
        for k, history in enumerate(ckpt.history):
            epochs = [h["epoch"] for h in history]
            ax.plot(epochs, [h["valid_accuracy"] for h in history], marker="o", label=f"member {k + 1} (valid)")
            ax.plot(epochs, [h["train_accuracy"] for h in history], linestyle=":", color=ax.lines[-1].get_color())
        ax.axhline(ckpt.extra["metrics"]["valid"]["accuracy"], color="black", label="ensemble (valid)")
        if baseline_valid is not None:
            ax.axhline(baseline_valid, color="grey", linestyle="--", label="TF-IDF + LR (valid)")


def export(
    checkpoint: Path,
    models_dir: Path,
    data: SentimentData,
    version: int | None = None,
    cache_dir: Path = DEFAULT_CACHE,
    curve: bool = True,
    baselines: bool = True,
    experiments: list[dict[str, Any]] | None = None,
    lodo: list[dict[str, Any]] | None = None,
    fp16_weights: bool = True,
    calibrate: bool = True,
) -> Path:
    """Export to ONNX, check parity and padding invariance, evaluate model and baselines, publish the version.

    With `fp16_weights` the weights are rounded to float16 first and stored as float16 (half the file, float32
    compute); parity is then checked against the rounded PyTorch model, and every metric is measured on the file.
    With `calibrate`, a temperature is fitted on the validation split (lowest NLL) and folded into the graph when
    it lowers both the validation NLL and ECE; the manifest gives ECE on every test split before and after.
    """
    ensemble, vocab, ckpt = load_trained(checkpoint)
    if fp16_weights:
        round_weights_to_fp16(ensemble)
        with torch.no_grad():  # float buffers too (the lexicon's valence table): they are stored as float16 as well
            for buffer in ensemble.buffers():
                if buffer.is_floating_point():
                    buffer.copy_(buffer.half().float())
    provenance = ckpt.extra["data"]
    if data.sha256 != provenance["sha256"] or data.split["ids_sha256"] != provenance["split"]["ids_sha256"]:
        raise ValueError("the data or its split differs from the one this checkpoint was trained on")
    train_cfg = ckpt.train_config
    model_cfg = SentimentConfig(**ckpt.model_config)
    max_tokens = train_cfg["max_tokens"]
    pairs = load_minimal_pairs() if tuple(data.labels) == DEFAULT_LABELS else []
    baseline_metrics = evaluate_baselines(data, {}, pairs) if baselines else {}
    calibration = fitted_temperature(ensemble, encode(data.valid, vocab, max_tokens)) if calibrate else {}
    ensemble.temperature = calibration.get("temperature", 1.0) if calibration.get("used") else 1.0
    temperature = ensemble.temperature

    with publish_version(models_dir, FAMILY, version) as staged:
        onnx_path = staged.path / "model.onnx"
        cases = parity_cases(model_cfg.vocab_size, max_tokens)
        example = tuple(torch.from_numpy(v) for v in cases[2].values())
        export_onnx(ensemble, example, onnx_path, INPUTS, OUTPUTS, DYNAMIC_AXES)
        if fp16_weights:
            store_weights_as_fp16(onnx_path)
        max_diff = check_parity(ensemble, onnx_path, cases, PARITY_ATOL)
        invariance = check_padding_invariance(onnx_path, cases[2:], INVARIANCE_ATOL)
        variant = int8(staged.path, data, vocab, max_tokens)

        # The metrics describe the file that is served: they come from onnxruntime, not from PyTorch. ECE is given
        # for the served (temperature-scaled) probabilities and for the same graph's before scaling (T undone).
        def score(rows: Sequence[Example]) -> dict[str, float]:
            encoded = encode(rows, vocab, max_tokens)
            probs = onnx_probs(onnx_path, encoded.ids)
            metrics = classification_metrics(encoded.labels, probs.argmax(1), len(data.labels))
            metrics["ece"] = expected_calibration_error(probs, encoded.labels)
            unscaled = temperature_scaled(probs, 1.0 / temperature)
            metrics["ece_before_temperature"] = expected_calibration_error(unscaled, encoded.labels)
            metrics["unk_rate"] = unk_rate(rows, vocab, max_tokens)
            return metrics

        trained = ckpt.extra["metrics"]
        model_metrics: dict[str, Any] = {"test": score(data.test), "valid": score(data.valid)}
        domains = [d for d in data.domains() if d]
        for d in domains:
            model_metrics[f"test_{d}"] = score([e for e in data.test if e.domain == d])
        if pairs:
            pair_probs = onnx_probs(onnx_path, encode_texts([r["text"] for r in pairs], vocab, max_tokens))
            model_metrics["minimal_pairs"] = minimal_pair_scores(pairs, pair_probs.argmax(1), data.labels)
        if len(domains) > 1 and "movie" in domains:
            # The vocabulary the movie-only models had (movie train split, same min count), on each domain's test.
            movie_vocab = build_vocab([e for e in data.train if e.domain == "movie"], train_cfg["min_count"])
            model_metrics["unk_rate_movie_only_vocabulary"] = {
                d: unk_rate([e for e in data.test if e.domain == d], movie_vocab, max_tokens) for d in domains
            }
        model_metrics["calibration"] = calibration
        model_metrics["leave_one_domain_out"] = lodo or []
        model_metrics["valid_accuracy_per_member"] = trained["valid_accuracy_per_member"]
        model_metrics["valid_accuracy_pytorch_float32"] = trained["valid"]["accuracy"]
        model_metrics["onnx_parity_max_abs_diff"] = max_diff
        model_metrics["padding_invariance_max_abs_diff"] = invariance
        log.info("model (onnx): %s", {k: v for k, v in model_metrics.items() if k != "valid_accuracy_per_member"})
        vocab.save(staged.path / "vocab.json")
        if curve:
            tfidf_valid = baseline_metrics.get("tfidf_logreg", {}).get("valid", {}).get("accuracy")
            save_training_curve(ckpt, tfidf_valid, staged.path / "training_curve.png")
        members = ckpt.extra["members"]
        staged.describe(
            name=f"sentiment-bilstm-{model_cfg.layers}x{model_cfg.hidden}" + (f"-x{members}" if members > 1 else ""),
            description=(
                "Bidirectional LSTM text classifier (packed sequences, pooling over time"
                + (f", average of {members} fine-tuned members" if members > 1 else "")
                + "): tokens + lengths -> class probabilities."
            ),
            graphs={"classify": graph_spec(onnx_path)},
            tokenizer=TokenizerSpec(
                vocab_file="vocab.json", vocab_size=len(vocab), min_count=train_cfg["min_count"], eos="none"
            ),
            config={
                **model_cfg.to_dict(),
                "labels": list(data.labels),
                "max_tokens": max_tokens,
                "pad_token": PAD,
                "unk_token": UNK,
                "members": members,
                "temperature": temperature,
                "weights": "float16 storage, float32 compute" if fp16_weights else "float32",
            },
            data=DataSpec(source=provenance["source"], sha256=provenance["sha256"], splits=data.split),
            # (the VADER lexicon, when used, is recorded in training.lexicon)
            training={
                **{k: v for k, v in train_cfg.items() if k != "pretrain"},
                "pretrain": ckpt.extra["pretrain"],
                "lexicon": ckpt.extra.get("lexicon"),
                "parameters": ckpt.extra["parameters"],
                "minutes": round(ckpt.extra["minutes"], 2),
                "history": ckpt.history,
                "experiments": experiments or [],
                "command": "python -m training.sentiment all",
            },
            metrics={"model": model_metrics, "baselines": baseline_metrics},
            variants={"int8": variant},
            default_precision=default_precision(variant),
        )
    return staged.target
