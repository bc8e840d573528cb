"""`genrec finetune`: teach the ranking LM what a serving mode reads.

Two objectives (genrec.training.objectives), each on examples from genrec.training.finetune_data:
``rank`` (the default) the cross-entropy of the target's label among the candidates' labels at
the last position, as rank mode reads it; ``likelihood`` the token-level cross-entropy of the
target item's text given the history, as likelihood mode scores it. Logits are computed only
where the loss reads them (``logits_to_keep``): the vocabulary projection elsewhere is wasted.

- What trains: ``top`` (the default) the last ``top_layers`` transformer layers and the final
  norm, ``full`` every layer, ``lora`` peft LoRA adapters on q/v projections (merged at the
  end). The token embeddings (tied to the output layer) stay frozen. The forward and backward
  run in bf16 (AMX/AVX-512 BF16 on CPU, tensor cores on a GPU); AdamW updates fp32 master
  copies, because a small update to a bf16 weight rounds away. A frozen lower stack costs no
  backward at all, which is why ``top`` is the cheap default (measured: see the notes).
- Validation NDCG@10 (the retriever's top N, scored as the objective's mode scores them) is
  computed before training and every ``eval_every`` steps; the best weights
  are kept and training stops after ``patience`` evaluations without a gain.
- A checkpoint (weights, optimizer, step, best so far) is written atomically every
  ``checkpoint_every`` steps into ``<out>.work/``; an identical command resumes from it.
- The result is a Hugging Face folder (bf16 safetensors, tokenizer, chat template) plus
  ``genrec-ranker.json`` (the manifest), written into a temporary folder and renamed into
  place: a killed run never replaces the model that serves.

The pieces: :mod:`.finetune_weights` (what trains; loading and writing the folder),
:mod:`.finetune_loop` (schedule, optimizer, run state, the steps), :mod:`.finetune_checkpoint`
(save and resume), and here the configuration, the run from start to end, and the model card.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genrec.errors import ConfigError
from genrec.training import finetune_checkpoint as checkpoints
from genrec.training.finetune_loop import MasterWeights, RunState, Schedule, scored_by, train
from genrec.training.finetune_weights import (
    MANIFEST,
    device_and_dtype,
    load_model,
    load_trainable,
    mark_trainable,
    write_model,
)
from genrec.training.fusion_weight import choose_fusion_weight
from genrec.training.objectives import objective_for

FORMAT = 1


@dataclass
class FinetuneConfig:
    objective: str = "rank"  # rank (the label among the labels) | likelihood (the item's text)
    # likelihood: the calibration validation scores with; None = the best of pmi, mean, sum at
    # each evaluation (the manifest records the one the kept weights were best with)
    likelihood_score: str | None = None
    method: str = "top"  # full (every layer) | top (the top_layers last layers) | lora
    top_layers: int = 8
    lr: float = 3e-5
    epochs: float = 1.0
    grad_accum: int = 8  # examples per optimizer step (one example per forward)
    warmup_steps: int = 10
    weight_decay: float = 0.0
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    eval_every: int = 50  # optimizer steps
    patience: int = 4  # evaluations without a gain
    checkpoint_every: int = 50  # optimizer steps
    # stop (keeping the best weights) once training + validation have taken this long
    max_seconds: float | None = None
    seed: int = 0
    threads: int | None = None  # torch threads; None = every core

    def fingerprint(self) -> str:
        keep = {k: v for k, v in asdict(self).items() if k not in ("threads", "max_seconds")}
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class FinetuneResult:
    out: Path
    manifest: dict[str, Any]
    losses: list[float] = field(default_factory=list)  # per optimizer step


def _manifest_base(base_model: str) -> dict[str, Any]:
    path = Path(base_model) / MANIFEST
    if path.is_file():  # fine-tuning a fine-tuned model: name the original base too
        prev = json.loads(path.read_text(encoding="utf-8"))
        return {"base_model": prev.get("base_model", base_model), "parent": base_model}
    return {"base_model": base_model}


def finetune(
    base_model: str,
    train_examples: list[Any],
    val: list[Any],
    out: Path,
    config: FinetuneConfig,
    *,
    info: dict[str, Any],
    say: Callable[[str], None] | None = None,
    progress: bool = True,
) -> FinetuneResult:
    """Train, keep the best weights by validation NDCG@10, choose the fusion weight on
    validation, write the model folder atomically. ``info`` goes into the manifest (template,
    retriever, data fingerprint)."""
    import torch

    say = say or (lambda m: print(m, file=sys.stderr, flush=True))
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    torch.set_num_threads(config.threads or os.cpu_count() or 1)
    device, dtype = device_and_dtype()
    tokenizer, model = load_model(base_model, dtype)
    model.to(device)
    lora = {"r": config.lora_r, "lora_alpha": config.lora_alpha}
    model = mark_trainable(
        model, config.method, config.top_layers, {**lora, "lora_dropout": config.lora_dropout}
    )
    model.config.use_cache = False
    model.train()

    objective = objective_for(
        config.objective, tokenizer, train_examples, val, config.likelihood_score
    )
    schedule = Schedule.plan(len(train_examples), config)
    weights = MasterWeights(model, config.lr, config.weight_decay)
    work = out.parent / f".{out.name}.work"
    key = checkpoints.run_key(config.fingerprint(), base_model, len(train_examples), info)
    run = RunState.restored(checkpoints.resume(work, key, model, weights.masters, weights.opt, say))
    if not run.evaluations:
        metrics0, scores0 = objective.validate(model, device)
        run.evaluated(0, metrics0, scores0, model)
        say(
            f"validation before training: NDCG@10 {metrics0['ndcg@10']:.4f} ({len(val)} users)"
            + scored_by(metrics0)
        )

    def checkpoint(state: RunState) -> None:
        checkpoints.save(
            work, key, model, weights.masters, weights.opt, state.saved(), state.best_weights
        )
        say(f"checkpoint at step {state.step} ({work})")

    stopped = train(
        model,
        objective,
        schedule,
        weights,
        run,
        config,
        device=device,
        checkpoint=checkpoint,
        progress=progress,
    )
    if run.evaluations[-1]["step"] < run.step:  # stopped between evaluations: the last counts
        metrics, scores = objective.validate(model, device)
        run.evaluated(run.step, metrics, scores, model)
        say(f"step {run.step}: validation NDCG@10 {metrics['ndcg@10']:.4f}")
    assert run.best is not None
    say(
        f"training stopped at step {run.step}/{schedule.total_steps}: {stopped}; "
        f"best step {run.best['step']}"
    )

    load_trainable(model, run.best_weights)
    if run.best.get("scores") is not None:  # the best evaluation's own scores: no second pass
        best_metrics, val_scores = run.best["metrics"], run.best["scores"]
    else:  # resumed from a checkpoint that did not keep them
        best_metrics, val_scores = objective.validate(model, device)
    fusion = choose_fusion_weight(val_scores, [ex.retrieval_scores for ex in val], val)
    fusion["mode"] = config.objective  # the mode this weight was chosen for
    if config.method == "lora":
        model = model.merge_and_unload()
    model.config.use_cache = True
    manifest = model_card(
        base_model,
        config,
        info,
        objective.serving(best_metrics),
        training={
            "device": str(device),
            "threads": torch.get_num_threads(),
            "examples": len(train_examples),
            "steps": run.step,
            "total_steps": schedule.total_steps,
            "best_step": run.best["step"],
            "examples_seen": run.step * config.grad_accum,
            "stopped": stopped,
            "seconds": round(run.seconds, 1),
            "wall_seconds": round(run.wall_seconds, 1),
            "examples_per_s": round(run.step * config.grad_accum / max(run.seconds, 1e-9), 3),
            "mean_tokens": round(objective.mean_tokens, 1),
        },
        validation={
            "users": len(val),
            "zero_shot": run.evaluations[0]["metrics"],
            "best": best_metrics,
            "evaluations": run.evaluations,
        },
        fusion=fusion,
    )
    write_model(model.to(torch.bfloat16), tokenizer, manifest, out)
    shutil.rmtree(work, ignore_errors=True)
    return FinetuneResult(out=out, manifest=manifest, losses=run.losses)


def model_card(
    base_model: str,
    config: FinetuneConfig,
    info: dict[str, Any],
    serving: dict[str, Any],
    *,
    training: dict[str, Any],
    validation: dict[str, Any],
    fusion: dict[str, Any],
) -> dict[str, Any]:
    """The manifest written beside the weights: what serving reads (objective, calibration,
    fusion weight) and how the model was made."""
    return {
        "format": FORMAT,
        "kind": "genrec-ranker",
        "objective": config.objective,
        **serving,
        **_manifest_base(base_model),
        **info,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "training": {**asdict(config), **training},
        "validation": validation,
        "fusion": fusion,
    }


def read_manifest(model_dir: str | Path) -> dict[str, Any] | None:
    """A fine-tuned ranker's manifest, or None for any other model folder."""
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not readable JSON: {exc}", param="model") from exc
    return doc if isinstance(doc, dict) else None


__all__ = ["MANIFEST", "FinetuneConfig", "FinetuneResult", "finetune", "read_manifest"]
