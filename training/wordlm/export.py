"""Export a trained word LM as a model version: the ONNX step model (parity-checked), the activations graph for
POST /inspect, the vocabulary, the Kneser-Ney baseline's perplexity and the training curve."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.tokenizer import EOS, UNK, EosMode
from training.activations import export_activations
from training.data.text import Corpus
from training.kit.export import DataSpec, TokenizerSpec, check_parity, export_onnx, graph_spec, publish_version
from training.kit.plots import curve_figure
from training.kit.quantize import Tolerance, add_variant, default_precision, int8_variant, zero_state
from training.wordlm.evaluate import kneser_ney_baseline, onnx_perplexity
from training.wordlm.model import WordLMConfig, WordLMEnsemble, WordLMStep
from training.wordlm.train import FAMILY, load_trained

log = logging.getLogger(__name__)

PARITY_ATOL = 1e-4
INPUTS = ["tokens", "h0", "c0"]
OUTPUTS = ["logits", "hn", "cn"]
DYNAMIC_AXES = {
    "tokens": {0: "batch", 1: "seq"},
    "h0": {1: "batch"},
    "c0": {1: "batch"},
    "logits": {0: "batch", 1: "seq"},
    "hn": {1: "batch"},
    "cn": {1: "batch"},
}


def parity_cases(cfg: WordLMConfig, seed: int = 0, layers: int | None = None) -> list[dict[str, np.ndarray]]:
    """Batch 1 and 8, sequence 1 and 37, with non-zero incoming state of `layers` (default: the config's) layers."""
    rng = np.random.default_rng(seed)
    layers = layers or cfg.layers
    cases = []
    for batch in (1, 8):
        for seq in (1, 37):
            cases.append(
                {
                    "tokens": rng.integers(0, cfg.vocab_size, size=(batch, seq), dtype=np.int64),
                    "h0": rng.standard_normal((layers, batch, cfg.hidden)).astype(np.float32) * 0.5,
                    "c0": rng.standard_normal((layers, batch, cfg.hidden)).astype(np.float32) * 0.5,
                }
            )
    return cases


TOLERANCE = Tolerance("test_perplexity", 0.02, "relative")  # int8 may cost at most 2% perplexity


def int8(version_dir: Path, corpus: Corpus, vocab_ids: Any, layers: int, cfg: WordLMConfig, batch_size: int) -> Any:
    """The int8 variant of the step graph (the activations graph for /inspect stays float32), with its test
    perplexity next to the float32 graph's, both from onnxruntime over the same windows."""
    ids = vocab_ids(corpus.test)

    def quality(path: Path) -> dict[str, Any]:
        return {"test_perplexity": onnx_perplexity(path, ids, batch_size, layers, cfg.hidden)}

    fp32 = quality(version_dir / "model.onnx")
    rng = np.random.default_rng(1)
    speed = {b: {"tokens": rng.integers(0, cfg.vocab_size, size=(b, 1), dtype=np.int64),
                 **zero_state(layers, b, cfg.hidden)} for b in (1, 64)}  # fmt: skip
    variant = int8_variant(version_dir, {"step": "model.onnx"}, quality, fp32, TOLERANCE,
                           parity_cases(cfg, layers=layers), speed)  # fmt: skip
    variant.metrics["fp32_onnxruntime_test_perplexity"] = fp32["test_perplexity"]
    return variant


def quantize(version_dir: Path, corpus: Corpus) -> Path:
    """Add the int8 variant to a published version (`python -m training.wordlm quantize`)."""
    from service.manifest import read_manifest
    from service.tokenizer import Vocab

    manifest = read_manifest(version_dir)
    assert manifest.tokenizer is not None
    if corpus.sha256 != manifest.data.sha256 or corpus.eos != manifest.tokenizer.eos:
        raise ValueError(f"the corpus differs from the one {version_dir} was trained on (text, or --eos)")
    vocab = Vocab.load(version_dir / manifest.tokenizer.vocab_file)
    cfg = WordLMConfig(**{k: v for k, v in manifest.config.items() if k in WordLMConfig.__dataclass_fields__})
    cfg.layers = manifest.config["member_layers"]
    variant = int8(version_dir, corpus, vocab.encode, manifest.config["layers"], cfg,
                   manifest.training["eval_batch_size"])  # fmt: skip
    add_variant(version_dir, "int8", variant)
    return version_dir


def save_training_curve(
    history: list[dict[str, Any]],
    path: Path,
    baseline_valid: float | None,
    members: list[list[dict[str, Any]]] | None = None,
    ensemble_valid: float | None = None,
) -> None:
    """Train and valid perplexity per epoch; of every member and the ensemble's valid figure when `members` given."""
    with curve_figure(path, "word LM training", "epoch", "perplexity") as ax:
        for k, member in enumerate(members or [history]):
            epochs = [h["epoch"] for h in member]
            suffix = f" (member {k + 1})" if members else ""
            ax.plot(epochs, [h["train_perplexity"] for h in member], label=f"train, with dropout{suffix}")
            ax.plot(epochs, [h["valid_perplexity"] for h in member], label=f"valid{suffix}")
        if ensemble_valid is not None:
            ax.axhline(ensemble_valid, color="black", label="ensemble (valid)")
        if baseline_valid is not None:
            ax.axhline(baseline_valid, color="grey", linestyle="--", label="Kneser-Ney 5-gram (valid)")
        ax.set_yscale("log")


def export(checkpoint: Path, models_dir: Path, corpus: Corpus, version: int | None = None, curve: bool = True) -> Path:
    """Export the checkpoint's model to ONNX, check parity, measure the baseline, publish the version."""
    model, vocab, ckpt = load_trained(checkpoint)
    provenance = ckpt.extra["corpus"]
    eos: EosMode = provenance.get("eos", "line")  # checkpoints from before the eos setting were trained on lines
    if corpus.sha256 != provenance["sha256"] or corpus.eos != eos:
        raise ValueError(
            f"the corpus differs from the one this checkpoint was trained on (text, or eos {corpus.eos} vs {eos})"
        )
    train_cfg = ckpt.train_config
    cfg = model.config
    members = len(model.members) if isinstance(model, WordLMEnsemble) else 1
    layers = members * cfg.layers  # of the state: an ensemble's members are stacked along the layer axis
    member_runs = ckpt.extra.get("member_runs", [])
    step = WordLMStep(model)
    baseline = kneser_ney_baseline(corpus, vocab, train_cfg["kn_order"])

    with publish_version(models_dir, FAMILY, version) as staged:
        onnx_path = staged.path / "model.onnx"
        example = tuple(torch.from_numpy(v) for v in parity_cases(cfg, layers=layers)[1].values())
        export_onnx(step, example, onnx_path, INPUTS, OUTPUTS, DYNAMIC_AXES)
        max_diff = check_parity(step, onnx_path, parity_cases(cfg, layers=layers), PARITY_ATOL)
        activations = export_activations(model, staged.path)  # activations.onnx + embeddings.npy, for POST /inspect
        variant = int8(staged.path, corpus, vocab.encode, layers, cfg, train_cfg["eval_batch_size"])
        vocab.save(staged.path / "vocab.json")
        if curve:
            save_training_curve(
                ckpt.history,
                staged.path / "training_curve.png",
                baseline["valid_perplexity"],
                [run["history"] for run in member_runs] or None,
                ckpt.extra["metrics"]["valid_perplexity"] if member_runs else None,
            )
        staged.describe(
            name=f"wordlm-{cfg.layers}x{cfg.hidden}" + (f"-x{members}" if members > 1 else ""),
            description="Word-level LSTM language model (step model: prefill a prompt, then one call per token)"
            + (
                f"; the average of {members} models' next-word distributions, model k's layers being state rows "
                f"{cfg.layers}k .. {cfg.layers}k+{cfg.layers - 1}."
                if members > 1
                else "."
            ),
            graphs={"step": graph_spec(onnx_path), "activations": activations.graph},
            tokenizer=TokenizerSpec(
                vocab_file="vocab.json", vocab_size=len(vocab), min_count=train_cfg["min_count"], eos=eos
            ),
            config={
                **cfg.to_dict(),
                "layers": layers,  # what the state holds, the graphs' layer dimension (the engine reads this)
                "members": members,
                "member_layers": cfg.layers,
                "eos_token": EOS,
                "unk_token": UNK,
                "embeddings_file": activations.embeddings_file,
            },
            data=DataSpec(
                source=provenance["source"],
                sha256=provenance["sha256"],
                splits={**provenance["sizes"], "method": "each book cut 80/10/10 in order"},
            ),
            training={
                **train_cfg,
                "parameters": ckpt.extra["parameters"],
                "minutes": round(ckpt.extra["minutes"], 2),
                "epochs_run": len(ckpt.history),
                "history": ckpt.history,
                "command": "python -m training.wordlm all",
            },
            metrics={
                "model": {
                    **ckpt.extra["metrics"],
                    "onnx_parity_max_abs_diff": max_diff,
                    "activations_parity_max_abs_diff": activations.max_abs_diff,
                    **({"members": [run["metrics"] for run in member_runs]} if member_runs else {}),
                },
                "baselines": {f"kneser_ney_{train_cfg['kn_order']}gram": baseline},
            },
            variants={"int8": variant},
            default_precision=default_precision(variant),
        )
    return staged.target
