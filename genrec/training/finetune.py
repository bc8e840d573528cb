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
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genrec.errors import ConfigError
from genrec.training.fusion_weight import choose_fusion_weight
from genrec.training.objectives import objective_for

MANIFEST = "genrec-ranker.json"
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


def device_and_dtype() -> tuple[Any, Any]:
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.bfloat16


def _manifest_base(base_model: str) -> dict[str, Any]:
    path = Path(base_model) / MANIFEST
    if path.is_file():  # fine-tuning a fine-tuned model: name the original base too
        prev = json.loads(path.read_text(encoding="utf-8"))
        return {"base_model": prev.get("base_model", base_model), "parent": base_model}
    return {"base_model": base_model}


def finetune(
    base_model: str,
    train: list[Any],
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
    from transformers import AutoModelForCausalLM, AutoTokenizer

    say = say or (lambda m: print(m, file=sys.stderr, flush=True))
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    torch.set_num_threads(config.threads or os.cpu_count() or 1)
    device, dtype = device_and_dtype()
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
        model = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the base model {base_model}: {exc}", param="model") from exc
    model.to(device)
    model = _trainable(model, config)
    model.config.use_cache = False
    model.train()

    objective = objective_for(config.objective, tokenizer, train, val, config.likelihood_score)
    order_rng = random.Random(config.seed)
    epochs_whole = max(1, math.ceil(config.epochs))
    order: list[int] = []
    for _ in range(epochs_whole):
        perm = list(range(len(train)))
        order_rng.shuffle(perm)
        order += perm
    order = order[: max(config.grad_accum, int(len(train) * config.epochs))]
    total_steps = len(order) // config.grad_accum

    params = [p for p in model.parameters() if p.requires_grad]
    # bf16 weights compute fast; the optimizer updates fp32 master copies (a small AdamW update
    # would round away in bf16) and copies them back after each step.
    masters = [p.detach().float().clone().requires_grad_(True) for p in params]
    opt = torch.optim.AdamW(masters, lr=config.lr, weight_decay=config.weight_decay)

    def lr_at(step: int) -> float:  # linear warm-up, then linear decay to 10 %
        if step < config.warmup_steps:
            return config.lr * (step + 1) / config.warmup_steps
        frac = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
        return config.lr * max(0.1, 1.0 - 0.9 * frac)

    work = out.parent / f".{out.name}.work"
    run_key = {
        "config": config.fingerprint(),
        "data": info.get("data", {}).get("fingerprint"),
        "base": base_model,
        "examples": len(train),
        # the template, example plan, retriever bundle and padding: other prompts, another run
        "info": hashlib.sha256(json.dumps(info, sort_keys=True, default=str).encode()).hexdigest(),
    }
    state = _resume(work, run_key, model, masters, opt, say)
    step = state.get("step", 0)
    history: list[dict[str, Any]] = state.get("evaluations", [])
    losses: list[float] = state.get("losses", [])
    best = state.get("best")  # {"step", "metrics"}
    best_weights = state.get("best_weights")
    trained_s = state.get("seconds", 0.0)

    if not history:
        metrics0, scores0 = objective.validate(model, device)
        history.append({"step": 0, "metrics": metrics0})
        best = {"step": 0, "metrics": metrics0, "scores": scores0}
        best_weights = _trainable_state(model)
        say(
            f"validation before training: NDCG@10 {metrics0['ndcg@10']:.4f} ({len(val)} users)"
            + _scored_by(metrics0)
        )

    bar = _bar(total_steps, step, progress)
    since_gain = sum(1 for h in history if h["step"] > best["step"])
    t_start, examples_done = time.perf_counter(), 0
    wall_before = state.get("wall_seconds", 0.0)  # training + validation, before a resume
    stopped = "finished"
    ema: float | None = None
    while step < total_steps:
        if since_gain >= config.patience:
            stopped = "early stop (no validation gain)"
            break
        elapsed = wall_before + time.perf_counter() - t_start
        if config.max_seconds is not None and elapsed >= config.max_seconds:
            stopped = f"time budget ({config.max_seconds:.0f} s)"
            break
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        step_loss = 0.0
        for i in order[step * config.grad_accum : (step + 1) * config.grad_accum]:
            loss = objective.loss(model, i, device) / config.grad_accum
            loss.backward()
            step_loss += loss.detach().item()
        for p, m in zip(params, masters, strict=True):
            m.grad = None if p.grad is None else p.grad.float()
        torch.nn.utils.clip_grad_norm_(masters, 1.0)
        opt.step()
        with torch.no_grad():
            for p, m in zip(params, masters, strict=True):
                p.copy_(m)
                p.grad = None
        step += 1
        examples_done += config.grad_accum
        losses.append(step_loss)
        trained_s += time.perf_counter() - t0
        ema = step_loss if ema is None else 0.9 * ema + 0.1 * step_loss
        rate = examples_done / max(1e-9, time.perf_counter() - t_start)
        bar.update(1)
        bar.set_postfix(loss=f"{ema:.3f}", ex_s=f"{rate:.2f}")
        if step % config.eval_every == 0 or step == total_steps:
            metrics, scores = objective.validate(model, device)
            history.append({"step": step, "metrics": metrics})
            gain = metrics["ndcg@10"] > best["metrics"]["ndcg@10"]
            if gain:
                best, best_weights = {"step": step, "metrics": metrics, "scores": scores}, None
                since_gain = 0
                best_weights = _trainable_state(model)
            else:
                since_gain += 1
            bar.write(
                f"step {step}: loss {ema:.4f} validation NDCG@10 {metrics['ndcg@10']:.4f}"
                + _scored_by(metrics)
                + (" (best)" if gain else f" (best {best['metrics']['ndcg@10']:.4f})"),
                file=sys.stderr,
            )
        if step % config.checkpoint_every == 0 and step < total_steps:
            _checkpoint(
                work,
                run_key,
                model,
                masters,
                opt,
                {
                    "step": step,
                    "evaluations": history,
                    "losses": losses,
                    "best": best,
                    "seconds": trained_s,
                    "wall_seconds": wall_before + time.perf_counter() - t_start,
                },
                best_weights,
            )
            say(f"checkpoint at step {step} ({work})")
    bar.close()
    if history[-1]["step"] < step:  # stopped between evaluations: the last weights count too
        metrics, scores = objective.validate(model, device)
        history.append({"step": step, "metrics": metrics})
        if metrics["ndcg@10"] > best["metrics"]["ndcg@10"]:
            best = {"step": step, "metrics": metrics, "scores": scores}
            best_weights = _trainable_state(model)
        say(f"step {step}: validation NDCG@10 {metrics['ndcg@10']:.4f}")
    say(f"training stopped at step {step}/{total_steps}: {stopped}; best step {best['step']}")

    _load_trainable(model, best_weights)
    if best.get("scores") is not None:  # the best evaluation's own scores: no second pass
        best_metrics, val_scores = best["metrics"], best["scores"]
    else:  # resumed from a checkpoint that did not keep them
        best_metrics, val_scores = objective.validate(model, device)
    fusion = choose_fusion_weight(val_scores, [ex.retrieval_scores for ex in val], val)
    fusion["mode"] = config.objective  # the mode this weight was chosen for
    if config.method == "lora":
        model = model.merge_and_unload()
    model.config.use_cache = True
    manifest = {
        "format": FORMAT,
        "kind": "genrec-ranker",
        "objective": config.objective,
        **objective.serving(best_metrics),
        **_manifest_base(base_model),
        **info,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "training": {
            **asdict(config),
            "device": str(device),
            "threads": torch.get_num_threads(),
            "examples": len(train),
            "steps": step,
            "total_steps": total_steps,
            "best_step": best["step"],
            "examples_seen": step * config.grad_accum,
            "stopped": stopped,
            "seconds": round(trained_s, 1),
            "wall_seconds": round(wall_before + time.perf_counter() - t_start, 1),
            "examples_per_s": round(step * config.grad_accum / max(trained_s, 1e-9), 3),
            "mean_tokens": round(objective.mean_tokens, 1),
        },
        "validation": {
            "users": len(val),
            "zero_shot": history[0]["metrics"],
            "best": best_metrics,
            "evaluations": history,
        },
        "fusion": fusion,
    }
    _write_model(model.to(torch.bfloat16), tokenizer, manifest, out)
    shutil.rmtree(work, ignore_errors=True)
    return FinetuneResult(out=out, manifest=manifest, losses=losses)


def _scored_by(metrics: dict[str, Any]) -> str:
    """ ", scored by pmi (pmi 0.1, mean 0.2, sum 0.1)" when the objective chose a calibration."""
    by = metrics.get("ndcg@10_by_score")
    if not by:
        return ""
    each = ", ".join(f"{k} {v:.4f}" for k, v in by.items())
    return f", scored by {metrics['score']} ({each})"


def _trainable(model: Any, config: FinetuneConfig) -> Any:
    """Mark what trains. The token embeddings (tied to the output layer) stay frozen in every
    method: only the label rows of the output would get a signal."""
    for p in model.parameters():
        p.requires_grad_(False)
    if config.method == "lora":
        import torch

        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise ConfigError(
                "--method lora needs peft: pip install 'genrec[finetune]' (or use --method top)",
                param="method",
            ) from None

        model = get_peft_model(
            model,
            LoraConfig(
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=["q_proj", "v_proj"],
                task_type="CAUSAL_LM",
            ),
        )
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.to(torch.bfloat16)
        return model
    layers = model.model.layers
    if config.method == "full":
        chosen = list(layers)
    elif config.method == "top":
        if not 1 <= config.top_layers <= len(layers):
            raise ConfigError(
                f"top_layers must be 1-{len(layers)} for this model, not {config.top_layers}",
                param="top_layers",
            )
        chosen = list(layers)[len(layers) - config.top_layers :]
    else:
        raise ConfigError(
            f"method must be full, top or lora, not {config.method!r}", param="method"
        )
    for module in [*chosen, model.model.norm]:
        for p in module.parameters():
            p.requires_grad_(True)
    return model


def _trainable_state(model: Any) -> dict[str, Any]:
    return {
        k: v.detach().to("cpu", copy=True) for k, v in model.named_parameters() if v.requires_grad
    }


def _load_trainable(model: Any, weights: dict[str, Any] | None) -> None:
    if not weights:
        return
    named = dict(model.named_parameters())
    import torch

    with torch.no_grad():
        for k, v in weights.items():
            named[k].copy_(v.to(named[k].device, named[k].dtype))


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


def _checkpoint(
    work: Path,
    key: dict,
    model: Any,
    masters: list,
    opt: Any,
    state: dict,
    best_weights: dict | None,
) -> None:
    """Everything a resume needs, written to a temporary folder and renamed over the last."""
    import torch

    work.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ckpt.", dir=work.parent))
    try:
        torch.save(
            {
                "key": key,
                "state": state,
                "weights": _trainable_state(model),
                "masters": [m.detach().cpu() for m in masters],
                "optimizer": opt.state_dict(),
                "best_weights": best_weights,
                "rng": torch.get_rng_state(),
            },
            tmp / "checkpoint.pt",
        )
        old = work.with_name(work.name + ".old")
        if work.exists():
            os.rename(work, old)
        os.rename(tmp, work)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _resume(
    work: Path, key: dict, model: Any, masters: list, opt: Any, say: Callable[[str], None]
) -> dict:
    import torch

    path = work / "checkpoint.pt"
    if not path.is_file():
        old = work.with_name(work.name + ".old") / "checkpoint.pt"
        path = old if old.is_file() else path
    if not path.is_file():
        return {}
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint means a fresh start
        say(f"ignoring unreadable checkpoint {path}: {exc}")
        return {}
    if ckpt.get("key") != key:
        say(f"ignoring checkpoint {path}: it belongs to another run (data, base or settings)")
        return {}
    _load_trainable(model, ckpt["weights"])
    with torch.no_grad():
        for m, w in zip(masters, ckpt["masters"], strict=True):
            m.copy_(w)
    opt.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["rng"])
    say(f"resuming from step {ckpt['state']['step']} ({path})")
    return {**ckpt["state"], "best_weights": ckpt["best_weights"] or None}


def _write_model(model: Any, tokenizer: Any, manifest: dict, out: Path) -> None:
    """The folder appears complete or not at all; a previous model there is replaced only
    after the new one is fully written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.replaced")
            shutil.rmtree(old, ignore_errors=True)
            os.rename(out, old)
        os.rename(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
