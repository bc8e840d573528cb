"""The fine-tuning loop: the example schedule, the optimizer over fp32 master weights, the run's
state (validations, the best weights, time), and the steps themselves.

Validation NDCG@10 is computed before training and every ``eval_every`` steps; the best weights
are kept and training stops after ``patience`` validations without a gain, or at the time budget.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from genrec.training.finetune_weights import trainable_state


@dataclass(frozen=True)
class Schedule:
    """Which examples each optimizer step reads, and its learning rate."""

    order: list[int]
    grad_accum: int
    lr: float
    warmup_steps: int

    @classmethod
    def plan(cls, n_examples: int, config: Any) -> Schedule:
        """``config.epochs`` passes over the examples, each shuffled by the seed."""
        rng = random.Random(config.seed)
        order: list[int] = []
        for _ in range(max(1, math.ceil(config.epochs))):
            perm = list(range(n_examples))
            rng.shuffle(perm)
            order += perm
        order = order[: max(config.grad_accum, int(n_examples * config.epochs))]
        return cls(order, config.grad_accum, config.lr, config.warmup_steps)

    @property
    def total_steps(self) -> int:
        return len(self.order) // self.grad_accum

    def examples(self, step: int) -> list[int]:
        return self.order[step * self.grad_accum : (step + 1) * self.grad_accum]

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then linear decay to 10 %."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        frac = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return self.lr * max(0.1, 1.0 - 0.9 * frac)


class MasterWeights:
    """bf16 weights compute fast; AdamW updates fp32 master copies (a small update would round
    away in bf16) and copies them back after each step."""

    def __init__(self, model: Any, lr: float, weight_decay: float) -> None:
        import torch

        self.params = [p for p in model.parameters() if p.requires_grad]
        self.masters = [p.detach().float().clone().requires_grad_(True) for p in self.params]
        self.opt = torch.optim.AdamW(self.masters, lr=lr, weight_decay=weight_decay)

    def step(self, lr: float) -> None:
        import torch

        for g in self.opt.param_groups:
            g["lr"] = lr
        for p, m in zip(self.params, self.masters, strict=True):
            m.grad = None if p.grad is None else p.grad.float()
        torch.nn.utils.clip_grad_norm_(self.masters, 1.0)
        self.opt.step()
        with torch.no_grad():
            for p, m in zip(self.params, self.masters, strict=True):
                p.copy_(m)
                p.grad = None


@dataclass
class RunState:
    """What a checkpoint keeps of a run (``best_weights`` is saved beside it)."""

    step: int = 0
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # per optimizer step
    best: dict[str, Any] | None = None  # {"step", "metrics", "scores"}
    seconds: float = 0.0  # in training steps
    wall_seconds: float = 0.0  # training + validation, this process's included once it saves
    best_weights: dict[str, Any] | None = None

    @classmethod
    def restored(cls, saved: dict[str, Any]) -> RunState:
        return cls(**{f.name: saved[f.name] for f in fields(cls) if f.name in saved})

    def saved(self) -> dict[str, Any]:
        doc = asdict(self)
        del doc["best_weights"]
        return doc

    def evaluated(self, step: int, metrics: dict, scores: Any, model: Any) -> bool:
        """Record a validation; True (and the weights kept) when it is the best so far."""
        self.evaluations.append({"step": step, "metrics": metrics})
        if self.best is not None and metrics["ndcg@10"] <= self.best["metrics"]["ndcg@10"]:
            return False
        self.best = {"step": step, "metrics": metrics, "scores": scores}
        self.best_weights = trainable_state(model)
        return True

    @property
    def since_gain(self) -> int:
        assert self.best is not None
        return sum(1 for e in self.evaluations if e["step"] > self.best["step"])


def scored_by(metrics: dict[str, Any]) -> str:
    """ ", scored by pmi (pmi 0.1, mean 0.2, sum 0.1)" when the objective chose a calibration."""
    by = metrics.get("ndcg@10_by_score")
    if not by:
        return ""
    each = ", ".join(f"{k} {v:.4f}" for k, v in by.items())
    return f", scored by {metrics['score']} ({each})"


def train(
    model: Any,
    objective: Any,
    schedule: Schedule,
    weights: MasterWeights,
    run: RunState,
    config: Any,
    *,
    device: Any,
    checkpoint: Callable[[RunState], None],
    progress: bool,
) -> str:
    """Optimizer steps until the schedule ends, patience runs out or the time budget is spent;
    returns why it stopped. ``run`` is updated in place."""
    bar = _bar(schedule.total_steps, run.step, progress)
    t_start, examples_done = time.perf_counter(), 0
    wall_before = run.wall_seconds
    stopped, ema = "finished", None
    while run.step < schedule.total_steps:
        if run.since_gain >= config.patience:
            stopped = "early stop (no validation gain)"
            break
        if config.max_seconds is not None:
            if wall_before + time.perf_counter() - t_start >= config.max_seconds:
                stopped = f"time budget ({config.max_seconds:.0f} s)"
                break
        t0 = time.perf_counter()
        step_loss = 0.0
        for i in schedule.examples(run.step):
            loss = objective.loss(model, i, device) / config.grad_accum
            loss.backward()
            step_loss += loss.detach().item()
        weights.step(schedule.lr_at(run.step))
        run.step += 1
        examples_done += config.grad_accum
        run.losses.append(step_loss)
        run.seconds += time.perf_counter() - t0
        ema = step_loss if ema is None else 0.9 * ema + 0.1 * step_loss
        bar.update(1)
        rate = examples_done / max(1e-9, time.perf_counter() - t_start)
        bar.set_postfix(loss=f"{ema:.3f}", ex_s=f"{rate:.2f}")
        if run.step % config.eval_every == 0 or run.step == schedule.total_steps:
            metrics, scores = objective.validate(model, device)
            gain = run.evaluated(run.step, metrics, scores, model)
            assert run.best is not None
            bar.write(
                f"step {run.step}: loss {ema:.4f} validation NDCG@10 {metrics['ndcg@10']:.4f}"
                + scored_by(metrics)
                + (" (best)" if gain else f" (best {run.best['metrics']['ndcg@10']:.4f})"),
                file=sys.stderr,
            )
        run.wall_seconds = wall_before + time.perf_counter() - t_start
        if run.step % config.checkpoint_every == 0 and run.step < schedule.total_steps:
            checkpoint(run)
    bar.close()
    return stopped


def _bar(total: int, done: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=done,
        desc="finetune",
        unit="step",
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
    )
