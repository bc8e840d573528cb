"""What a rank request costs in FLOPs, and what this machine's cores deliver: the two halves of a
roofline, measured in the same run so their ratio holds on a noisy machine.

A rank request is one forward pass over the prompt's new tokens (those the prefix cache did not
already hold). Its cost is ``2 x linear parameters x new tokens`` for the matmuls (the embedding
is a lookup, and vLLM computes vocabulary logits for the last position only) plus the attention
scores and values of each new token against everything before it. The machine's side is a torch
GEMM in the engine's dtype on the engine's thread count: a large square one (the machine's peak)
and the model's own layer shapes at the request's token count (what the model can reach).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def from_config(cls, model_dir: str | Path) -> ModelShape:
        """From a Hugging Face ``config.json`` of a Llama-style decoder."""
        cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
        heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        return cls(
            hidden=hidden,
            intermediate=int(cfg["intermediate_size"]),
            layers=int(cfg["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads),
            vocab=int(cfg["vocab_size"]),
        )

    def gemms(self) -> list[tuple[int, int]]:
        """One layer's matmuls as vLLM runs them, (in, out): fused QKV, O, fused gate-up, down."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return [
            (self.hidden, q + 2 * kv),
            (q, self.hidden),
            (self.hidden, 2 * self.intermediate),
            (self.intermediate, self.hidden),
        ]

    @property
    def linear_params(self) -> int:
        """Non-embedding parameters that every token multiplies (norms are negligible)."""
        return self.layers * sum(k * n for k, n in self.gemms())

    def prefill_flops(self, prompt_tokens: int, cached_tokens: int = 0) -> float:
        """FLOPs of one forward pass that computes ``prompt_tokens - cached_tokens`` new tokens
        at the end of the prompt, and the logits of the last one."""
        new = max(0, prompt_tokens - cached_tokens)
        if new == 0:
            return 0.0
        linear = 2.0 * self.linear_params * new
        # token at position p attends to p + 1 keys: QK^T and AV, 2 FLOPs per multiply-add each
        positions = sum(range(cached_tokens + 1, prompt_tokens + 1))
        attention = 4.0 * self.layers * self.heads * self.head_dim * positions
        logits = 2.0 * self.hidden * self.vocab
        return linear + attention + logits


def _time_gemm(torch: Any, m: int, k: int, n: int, dtype: Any, seconds: float) -> tuple[int, float]:
    """(FLOPs, seconds) of the fastest of eight bursts multiplying (m, k) by (k, n) for
    ``seconds`` in all: a peak is what the cores do when they get to run, and on a shared
    machine a single long measurement mostly measures the neighbours."""
    a = torch.randn(m, k, dtype=dtype)
    b = torch.randn(k, n, dtype=dtype)
    for _ in range(2):  # first calls pick kernels and pack weights
        a @ b
    best = (0, 1.0)
    for _ in range(8):
        reps, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds / 8 or not reps:
            a @ b
            reps += 1
        if reps / elapsed > best[0] / best[1]:
            best = (reps, elapsed)
    return 2 * m * k * n * best[0], best[1]


def gemm_peak(
    threads: int,
    dtype: str,
    *,
    shape: ModelShape | None = None,
    tokens: int = 288,
    seconds: float = 1.0,
) -> dict[str, Any]:
    """GFLOP/s of torch matmuls on ``threads`` threads in ``dtype``: a 1024-cube (``peak``) and,
    given a model, its layer shapes at ``tokens`` rows (``model_shapes``). Torch's thread count is
    restored afterwards."""
    import torch

    torch_dtype = getattr(torch, dtype)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        flops, secs = _time_gemm(torch, 1024, 1024, 1024, torch_dtype, seconds)
        out: dict[str, Any] = {
            "dtype": dtype,
            "threads": threads,
            "peak_gflops": round(flops / secs / 1e9, 1),
        }
        if shape is not None:
            gflops = _model_gemms(torch, shape, tokens, torch_dtype, seconds)
            out["model_shapes_gflops"] = round(gflops, 1)
            out["model_shapes_tokens"] = tokens
        return out
    finally:
        torch.set_num_threads(previous)


def _model_gemms(torch: Any, shape: ModelShape, tokens: int, dtype: Any, seconds: float) -> float:
    total_flops, total_secs = 0, 0.0
    for k, n in shape.gemms():
        flops, secs = _time_gemm(torch, tokens, k, n, dtype, seconds / 4)
        # weight each shape by the FLOPs it has in the model, not by repetitions
        total_flops += 2 * tokens * k * n
        total_secs += secs * (2 * tokens * k * n) / flops
    return total_flops / total_secs / 1e9
