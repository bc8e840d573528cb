"""Fine-tuning checkpoints: everything a resume needs, written atomically into ``<out>.work/``.

A checkpoint belongs to one run (its key: settings, data, base model, examples, prompts): an
identical command resumes from it, any other starts fresh and says why.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genrec.training.finetune_weights import load_trainable, trainable_state


def run_key(
    config_fingerprint: str, base_model: str, examples: int, info: dict[str, Any]
) -> dict[str, Any]:
    return {
        "config": config_fingerprint,
        "data": info.get("data", {}).get("fingerprint"),
        "base": base_model,
        "examples": examples,
        # the template, example plan, retriever bundle and padding: other prompts, another run
        "info": hashlib.sha256(json.dumps(info, sort_keys=True, default=str).encode()).hexdigest(),
    }


def save(
    work: Path,
    key: dict,
    model: Any,
    masters: list,
    opt: Any,
    state: dict,
    best_weights: dict | None,
) -> None:
    """Write to a temporary folder and rename it over the last checkpoint."""
    import torch

    work.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ckpt.", dir=work.parent))
    try:
        torch.save(
            {
                "key": key,
                "state": state,
                "weights": trainable_state(model),
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


def resume(
    work: Path, key: dict, model: Any, masters: list, opt: Any, say: Callable[[str], None]
) -> dict:
    """The saved run state (weights, optimizer and RNG restored), or {} to start fresh."""
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
    load_trainable(model, ckpt["weights"])
    with torch.no_grad():
        for m, w in zip(masters, ckpt["masters"], strict=True):
            m.copy_(w)
    opt.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["rng"])
    say(f"resuming from step {ckpt['state']['step']} ({path})")
    return {**ckpt["state"], "best_weights": ckpt["best_weights"] or None}
