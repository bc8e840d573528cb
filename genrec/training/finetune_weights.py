"""What trains in a fine-tune, and how the model folder is loaded and written.

``top`` (the default) trains the last ``top_layers`` transformer layers and the final norm,
``full`` every layer, ``lora`` peft LoRA adapters on q/v projections (merged at the end). The token
embeddings (tied to the output layer) stay frozen in every method: only the label rows of the
output would get a signal. The forward and backward run in bf16; the optimizer
(:mod:`genrec.training.finetune_loop`) keeps fp32 master copies.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from genrec.errors import ConfigError

MANIFEST = "genrec-ranker.json"


def device_and_dtype() -> tuple[Any, Any]:
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.bfloat16


def load_model(base_model: str, dtype: Any) -> tuple[Any, Any]:
    """(tokenizer, model) of a Hugging Face folder; a ConfigError naming it when unreadable."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
        model = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the base model {base_model}: {exc}", param="model") from exc
    return tokenizer, model


def mark_trainable(model: Any, method: str, top_layers: int, lora: dict[str, Any]) -> Any:
    """Mark what trains (see the module docstring); returns the model (peft-wrapped for lora)."""
    for p in model.parameters():
        p.requires_grad_(False)
    if method == "lora":
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
            LoraConfig(**lora, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
        )
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.to(torch.bfloat16)
        return model
    layers = model.model.layers
    if method == "full":
        chosen = list(layers)
    elif method == "top":
        if not 1 <= top_layers <= len(layers):
            raise ConfigError(
                f"top_layers must be 1-{len(layers)} for this model, not {top_layers}",
                param="top_layers",
            )
        chosen = list(layers)[len(layers) - top_layers :]
    else:
        raise ConfigError(f"method must be full, top or lora, not {method!r}", param="method")
    for module in [*chosen, model.model.norm]:
        for p in module.parameters():
            p.requires_grad_(True)
    return model


def trainable_state(model: Any) -> dict[str, Any]:
    return {
        k: v.detach().to("cpu", copy=True) for k, v in model.named_parameters() if v.requires_grad
    }


def load_trainable(model: Any, weights: dict[str, Any] | None) -> None:
    if not weights:
        return
    import torch

    named = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in weights.items():
            named[k].copy_(v.to(named[k].device, named[k].dtype))


def write_model(model: Any, tokenizer: Any, manifest: dict, out: Path) -> None:
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
