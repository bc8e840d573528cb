"""An int8 W8A8 checkpoint of a bf16 Llama-style model, written offline without any hub access.

vLLM's CPU build runs int8 linear layers (``CPUInt8ScaledMMLinearKernel``: oneDNN, or SGLang's
AMX/VNNI kernel on x86) for compressed-tensors checkpoints whose weights are int8 with one scale
per output channel and whose activations are quantized per token at run time. That format is
simple enough to write directly: each linear weight ``W`` becomes ``round(W / s)`` in int8 with
``s = max|W_row| / 127``, stored beside it as ``weight_scale``, and ``config.json`` says so. The
embedding and the (tied) LM head stay bf16. Written to a temporary folder renamed into place.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from genrec.errors import ConfigError

# The linear layers of a Llama-style decoder layer (what vLLM fuses into QKV and gate-up).
LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

W8A8_CONFIG: dict[str, Any] = {
    "quant_method": "compressed-tensors",
    "format": "int-quantized",
    "quantization_status": "compressed",
    "ignore": ["lm_head"],
    "config_groups": {
        "group_0": {
            "targets": ["Linear"],
            "weights": {
                "num_bits": 8,
                "type": "int",
                "symmetric": True,
                "strategy": "channel",
                "dynamic": False,
            },
            "input_activations": {
                "num_bits": 8,
                "type": "int",
                "symmetric": True,
                "strategy": "token",
                "dynamic": True,
            },
            "output_activations": None,
        }
    },
}


def quantize_weight(weight: Any) -> tuple[Any, Any]:
    """(int8 weight, per-output-channel scale as a column) of a 2-D float weight."""
    import torch

    w = weight.float()
    # the scale is stored (and used by vLLM) in bf16: quantize against that rounded value, so
    # int8 x stored scale is within half a step of each weight
    scale = (w.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127.0).to(torch.bfloat16)
    q = torch.round(w / scale.float()).clamp(-127, 127).to(torch.int8)
    return q, scale


def write_w8a8(src: str | Path, dst: str | Path) -> Path:
    """Write the W8A8 checkpoint of the bf16 model folder ``src`` to ``dst`` (a new folder)."""
    from safetensors.torch import load_file, save_file

    src, dst = Path(src), Path(dst)
    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    if config.get("quantization_config"):
        raise ConfigError(f"{src} is already quantized; give the bf16 model folder")
    shards = sorted(src.glob("*.safetensors"))
    if not shards:
        raise ConfigError(f"{src} has no *.safetensors weights to quantize")
    if dst.exists():
        raise ConfigError(f"{dst} exists; choose a new folder")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        for f in src.iterdir():
            if f.is_file() and f.suffix != ".safetensors" and f.name != "config.json":
                shutil.copy2(f, tmp / f.name)
        quantized = 0
        for shard in shards:
            tensors = load_file(shard)
            out = {}
            for name, tensor in tensors.items():
                parts = name.split(".")
                if parts[-1] == "weight" and len(parts) > 1 and parts[-2] in LINEAR:
                    q, scale = quantize_weight(tensor)
                    out[name] = q
                    out[name[: -len("weight")] + "weight_scale"] = scale
                    quantized += 1
                else:
                    out[name] = tensor
            save_file(out, str(tmp / shard.name), metadata={"format": "pt"})
        if not quantized:
            raise ConfigError(f"{src} has no Llama-style linear layers ({', '.join(LINEAR)})")
        config["quantization_config"] = W8A8_CONFIG
        (tmp / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst
