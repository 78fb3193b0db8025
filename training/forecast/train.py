"""Training: every member of the ensemble over the kit's loop (a "round" of `eval_every` batches per epoch).

    context z[0..C-1]  ──prefill (teacher forcing)──►  quantiles of z[1..C-1] and of the first horizon step
    horizon step k>1   ◄──the median of step k-1 fed back as input (flagged horizon_step = k / max_horizon)

The pinball loss of the quantiles is taken at every context position and every horizon step, each window weighted
by 1 / (its in-sample seasonal naive error), so the loss tracks MASE. Rolling the horizon out during training
(instead of only one-step-ahead teacher forcing) is what makes the intervals widen with the horizon. The best
round of each member on the validation horizons (mean MASE) is kept.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from service.families.forecast.engine import ForecastConfig, input_features
from training.data.series import Series, SeriesSet, synthetic_series
from training.data.synthetic import generate, mix_manifest
from training.forecast.config import FAMILY, FEATURES, TrainConfig
from training.forecast.evaluate import validation_mase
from training.forecast.model import ForecastEnsemble, ForecasterConfig, QuantileLSTM, ensemble_config
from training.forecast.windows import Batch, WindowSampler
from training.kit.checkpoint import Checkpoint, save_checkpoint
from training.kit.loop import Stopping, fit, progress
from training.kit.seed import set_seed

log = logging.getLogger("training.forecast")


def model_config(cfg: TrainConfig) -> ForecasterConfig:
    return ForecasterConfig(
        features=len(FEATURES),
        hidden=cfg.hidden,
        layers=cfg.layers,
        quantiles=tuple(cfg.quantiles),
        dropout=cfg.dropout,
        skip_feature=FEATURES.index("seasonal_lag"),
    )


def pinball(pred: Tensor, target: Tensor, quantiles: Tensor) -> Tensor:
    """pred (..., Q), target (...) -> loss (..., Q)."""
    diff = target.unsqueeze(-1) - pred
    return torch.maximum(quantiles * diff, (quantiles - 1) * diff)


def batch_loss(model: QuantileLSTM, batch: Batch, cfg: TrainConfig, serving: ForecastConfig) -> Tensor:
    """Prefill the contexts (truncated BPTT: only the last `grad_context` steps carry gradients), then roll out."""
    quantiles = torch.tensor(cfg.quantiles)
    med = model.median_index
    split = max(0, batch.x.size(1) - cfg.grad_context)
    state = model.init_state(batch.x.size(0))
    if split:
        with torch.no_grad():
            _, state = model.lstm(batch.x[:, :split], state)
    x_grad = batch.x[:, split:]
    out, (h, c) = model.lstm(x_grad, state)
    q_context = model.quantiles(x_grad, out)  # (B, C - split, Q)
    steps = [q_context[:, -1]]  # (B, Q): forecast of the first horizon value
    recent, position = batch.recent, batch.position
    for k in range(1, batch.targets.size(1)):
        z_in = steps[-1][:, med : med + 1].detach().double().numpy()  # (B, 1) fed-back median
        x = torch.from_numpy(input_features(recent, z_in, position, batch.season_length, k, serving))
        recent = np.concatenate([recent, z_in], axis=1)[:, 1:]
        position = position + 1
        y, (h, c) = model(x, (h, c))
        steps.append(y[:, 0])
    q_horizon = torch.stack(steps, dim=1)  # (B, R, Q)
    horizon_loss = pinball(q_horizon, batch.targets, quantiles).mean(dim=(1, 2))  # (B,)
    context_loss = pinball(q_context[:, :-1], batch.context_targets[:, split:-1], quantiles).mean(dim=(1, 2))
    if q_context.size(1) == 1:
        context_loss = torch.zeros_like(horizon_loss)
    return ((horizon_loss + cfg.context_loss_weight * context_loss) * batch.weights).mean()


def train_member(
    real: list[Series], synthetic: list[Series], cfg: TrainConfig, seed: int
) -> tuple[QuantileLSTM, list[dict[str, Any]]]:
    set_seed(seed)
    model = QuantileLSTM(model_config(cfg))
    serving = cfg.serving(cfg.hidden)
    sampler = WindowSampler(real, synthetic, cfg, seed)
    valid = [s for s in real if len(s.valid_history) >= cfg.min_history]
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step = 0
    running = math.nan

    def lr_at(i: int) -> float:
        if i < cfg.warmup:
            return cfg.lr * (i + 1) / cfg.warmup
        done = (i - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + math.cos(math.pi * min(done, 1.0)))

    def train_round(round_no: int) -> dict[str, Any]:
        nonlocal step, running
        model.train()
        bar = progress(range(min(cfg.eval_every, cfg.steps - step)), f"member seed {seed} round {round_no}")
        for _ in bar:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            loss = batch_loss(model, sampler.sample(), cfg, serving)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            optimizer.step()
            running = loss.item() if math.isnan(running) else 0.98 * running + 0.02 * loss.item()
            step += 1
            if step % 10 == 0:
                bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr_at(step):.2g}")
        return {"step": step, "train_loss": running}

    def validate() -> float:
        # Without validation series (or when MASE is undefined for all), the smoothed training loss decides.
        score = validation_mase(model, valid, serving) if valid else math.nan
        model.train()
        return running if math.isnan(score) else score

    def report(record: dict[str, Any], improved: bool) -> None:
        log.info(
            "seed %d | step %5d | loss %.4f | valid MASE %.4f%s | %.1f min",
            seed,
            record["step"],
            record["train_loss"],
            record["valid_mase"],
            " (best)" if improved else "",
            record["minutes"],
        )

    rounds = math.ceil(cfg.steps / cfg.eval_every)
    result = fit(
        rounds,
        train_round,
        validate,
        Stopping(metric="valid_mase", max_minutes=cfg.max_minutes),
        model=model,
        report=report,
    )
    return model.eval(), result.history


def synthetic_for(cfg: TrainConfig) -> tuple[list[Series], dict[str, Any]]:
    seed = cfg.seed + 10_000
    if not cfg.synthetic_series:
        return [], {"count": 0}
    if cfg.legacy_synthetic:
        return synthetic_series(cfg.synthetic_series, seed), {"count": cfg.synthetic_series, "seed": seed,
                                                               "generator": "legacy"}  # fmt: skip
    started = time.monotonic()
    series = generate(cfg.synthetic_series, seed, max_season=cfg.max_season_length)
    log.info("synthetic: %d series in %.1f s", len(series), time.monotonic() - started)
    return series, mix_manifest(cfg.synthetic_series, seed)


def train(data: SeriesSet, cfg: TrainConfig, checkpoint: Path) -> Checkpoint:
    """Train every ensemble member; save a self-describing checkpoint (the kit's shape)."""
    started = time.monotonic()
    synthetic, mix = synthetic_for(cfg)
    log.info("data: %d real series %s + %d synthetic | %s", len(data.series), data.by_frequency(), len(synthetic),
             data.source)  # fmt: skip
    members: list[QuantileLSTM] = []
    histories: list[dict[str, Any]] = []
    for i in range(cfg.members):
        model, history = train_member(data.series, synthetic, cfg, cfg.seed + i)
        members.append(model)
        histories.append({"seed": cfg.seed + i, "history": history})
    ensemble = ForecastEnsemble(members)
    minutes = (time.monotonic() - started) / 60
    best = [min(r["valid_mase"] for r in h["history"]) for h in histories]
    ckpt = Checkpoint(
        family=FAMILY,
        model_config=ensemble_config(model_config(cfg), cfg.members),
        model_state={k: v.detach().clone() for k, v in ensemble.state_dict().items()},
        train_config=_jsonable(asdict(cfg)),
        epoch=max(len(h["history"]) for h in histories),
        best_metric=float(np.mean(best)),
        metric="valid_mase (mean over members)",
        history=histories,
        extra={
            "data": {"source": data.source, "sha256": data.sha256, "summary": data.summary()},
            "synthetic": mix,
            "minutes": minutes,
            "parameters": sum(v.numel() for v in ensemble.parameters()),
        },
    )
    save_checkpoint(ckpt, checkpoint)
    log.info("trained %d members in %.1f min -> %s", cfg.members, minutes, checkpoint)
    return ckpt


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=list))
