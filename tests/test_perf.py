"""Issue #12: the engine's thread binding, the roofline's arithmetic and GEMM peak, prefix-cache
accounting, prompt order for prefix caching, and `genrec bench recommend`'s report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from genrec.bench.roofline import ModelShape, gemm_peak
from genrec.data.item import Item
from genrec.engines import engine_runtime
from genrec.engines.hardware import (
    RESERVE_FROM_CORES,
    allowed_cpus,
    auto_policy,
    check_threads_bind,
    choose_binding,
    cpu_flags,
    cpu_list_text,
    parse_cpu_list,
)
from genrec.model_files import model_path
from genrec.prompts import ChatTokenizer, PromptRegistry, render
from genrec.schema import RecommendRequest
from genrec.settings import Settings

# -- thread binding ------------------------------------------------------------------------------


def test_cpu_lists_parse_and_print_as_vllm_reads_them() -> None:
    assert parse_cpu_list("0-3,6") == (0, 1, 2, 3, 6)
    assert parse_cpu_list("5,1") == (1, 5)
    assert cpu_list_text((0, 1, 2, 5, 7, 8)) == "0-2,5,7-8"
    for bad in ("", "x", "0-", "3-1", "1;2"):
        with pytest.raises(ValueError):
            check_threads_bind(bad)
    assert check_threads_bind("nobind") == "nobind"


def test_a_bad_binding_setting_names_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(cpu_threads_bind="every core")
    assert "cpu_threads_bind" in str(info.value)
    assert Settings(cpu_threads_bind="0-1").cpu_threads_bind == "0-1"


def test_explicit_bindings_set_vllms_variables() -> None:
    cpus = allowed_cpus()
    every = choose_binding("all")
    assert every.cpus == cpus and every.threads == len(cpus)
    assert every.env == {
        "VLLM_CPU_OMP_THREADS_BIND": cpu_list_text(cpus),
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }
    vllm = choose_binding("vllm")  # vLLM's own default: its variables removed
    assert set(vllm.env.values()) == {None}
    assert vllm.threads == max(1, len(cpus) - 1)
    one = choose_binding(str(cpus[0]))
    assert one.policy == "list" and one.cpus == (cpus[0],)
    assert choose_binding("nobind").env["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"


def test_auto_follows_the_measurements_for_the_machine() -> None:
    amx = frozenset({"avx512_bf16", "amx_bf16", "amx_tile"})
    zen4 = frozenset({"avx512_bf16", "avx512_vnni"})
    assert auto_policy(2, zen4)[0] == "all"  # measured 1.7x faster on 2 Zen 4 cores
    assert auto_policy(2, amx)[0] == "vllm"  # measured 2-10x slower on 2 shared AMX cores
    assert auto_policy(1, amx)[0] == "all"
    assert auto_policy(RESERVE_FROM_CORES, zen4)[0] == "vllm"
    if os.environ.get("VLLM_CPU_OMP_THREADS_BIND") or os.environ.get(
        "VLLM_CPU_NUM_OF_RESERVED_CPU"
    ):
        pytest.skip("the environment sets vLLM's binding itself (auto then follows it)")
    here = choose_binding("auto")
    policy, reason = auto_policy(len(allowed_cpus()), cpu_flags())
    assert here.policy == policy and here.describe()["reason"] == reason
    assert here.threads == (len(allowed_cpus()) if policy == "all" else len(allowed_cpus()) - 1)


# -- roofline ------------------------------------------------------------------------------------


def test_flops_come_from_the_models_shape(settings: Settings) -> None:
    shape = ModelShape.from_config(model_path(settings))
    # SmolLM2-135M: 30 layers of q/o 576x576, k/v 576x192, three 576x1536 MLP matrices
    assert shape.linear_params == 30 * (2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536)
    full = shape.prefill_flops(288)
    assert 2 * shape.linear_params * 288 < full < 1.1 * 2 * shape.linear_params * 288
    cached = shape.prefill_flops(288, cached_tokens=96)
    assert 0.6 * full < cached < 0.7 * full  # 192 of 288 tokens computed
    assert shape.prefill_flops(288, cached_tokens=288) == 0.0


def test_gemm_peak_is_measured_on_the_given_threads(settings: Settings) -> None:
    import torch

    before = torch.get_num_threads()
    shape = ModelShape.from_config(model_path(settings))
    peak = gemm_peak(1, "float32", shape=shape, tokens=64, seconds=0.2)
    assert peak["threads"] == 1 and peak["peak_gflops"] > 1.0
    assert peak["model_shapes_gflops"] > 1.0
    assert torch.get_num_threads() == before


# -- prefix cache --------------------------------------------------------------------------------


async def test_a_second_turn_reuses_the_cached_prefix(recommender) -> None:
    runtime = engine_runtime(recommender.engine)
    assert runtime["engine"] == "in-process" and runtime["threads"] >= 1
    assert runtime["threads_bind"] == recommender.settings.cpu_threads_bind
    history = ["1", "50", "100", "181", "258"]  # ML-100K ids
    await recommender.recommend(RecommendRequest(history=["7", "8"], mode="rank"))
    first = await recommender.recommend(RecommendRequest(history=history, mode="rank"))
    again = await recommender.recommend(
        RecommendRequest(history=history, query="something lighter", mode="rank")
    )
    # The first sees only the static system text cached; the second turn also the history.
    assert 0 < first.usage.cached_tokens < first.usage.prompt_tokens
    assert again.usage.cached_tokens > first.usage.cached_tokens + 32


# -- prompt order --------------------------------------------------------------------------------

HISTORY = [Item(id=str(i), title=f"Liked film {i}", tags=["Drama"]) for i in range(6)]


def _candidates(offset: int) -> list[Item]:
    return [Item(id=str(100 + offset + i), title=f"Candidate {offset + i}") for i in range(5)]


@pytest.mark.parametrize(
    "name",
    [
        "rank_default",
        "rank_brief",
        "rank_detailed",
        "generate_default",
        "generate_numbered",
        "describe_default",
    ],
)
def test_what_a_users_turns_share_comes_first(settings: Settings, name: str) -> None:
    """Two turns of one user (same history; a new query and new candidates) share the prompt up
    to the end of the history, so the second turn's prefill starts after it."""
    tokenizer = ChatTokenizer.load(model_path(settings))
    template = PromptRegistry().get(name)
    mode = template.meta.modes[0]
    one = render(template, tokenizer, mode=mode, candidates=_candidates(0), history=HISTORY, k=3)
    two = render(
        template,
        tokenizer,
        mode=mode,
        candidates=_candidates(50),
        history=HISTORY,
        query="a lighter one",
        k=3,
    )
    shared = os.path.commonprefix([one.prompt, two.prompt])
    assert HISTORY[-1].title in shared, f"{name}: the history is not all in the shared prefix"


# -- the bench -----------------------------------------------------------------------------------


def test_bench_recommend_reports_binding_roofline_and_cache_hits(tmp_path: Path) -> None:
    """One real engine start: the JSON carries the binding, a GEMM peak, and for rank the new vs
    cached tokens, achieved GFLOP/s and its ratio to the peak (second turns hit the cache)."""
    genrec = Path(sys.executable).parent / "genrec"
    env = {**os.environ, "GENREC_MODEL_CACHE": str(Path.home() / ".cache/genrec/models")}
    proc = subprocess.run(
        [str(genrec), "bench", "recommend", "--modes", "rank", "--requests", "2",
         "--concurrency", "1", "--warmup", "1", "--gemm-seconds", "0.2", "--binding", "vllm"],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["binding"]["threads_bind"] == "vllm" and doc["binding"]["threads"] >= 1
    assert doc["gemm"]["threads"] == doc["binding"]["threads"]
    assert doc["gemm"]["peak_gflops"] > 0 and doc["gemm"]["model_shapes_gflops"] > 0
    first, turn2 = doc["cells"]
    assert first["ok"] == 2 and turn2["turn"] == 2
    roof = first["roofline"]
    assert 0 < roof["new_tokens_mean"] < first["prompt_tokens_mean"]
    assert roof["gflop_per_request"] > 10 and 0 < roof["llm_of_peak"] < 2
    assert turn2["roofline"]["prefix_cache_hit_rate"] > roof["prefix_cache_hit_rate"]


def test_model_threads_prints_the_binding_for_vllm_serve() -> None:
    genrec = Path(sys.executable).parent / "genrec"
    env = {**os.environ, "GENREC_CPU_THREADS_BIND": "all"}
    proc = subprocess.run(
        [str(genrec), "model", "threads", "--json"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["policy"] == "all" and doc["threads"] == len(allowed_cpus())
    assert doc["env"]["VLLM_CPU_OMP_THREADS_BIND"] == cpu_list_text(allowed_cpus())
    env["GENREC_CPU_THREADS_BIND"] = "every"
    bad = subprocess.run(
        [str(genrec), "model", "threads"], capture_output=True, text=True, timeout=300, env=env
    )
    assert bad.returncode != 0 and "cpu_threads_bind" in bad.stderr.lower()


# -- int8 ----------------------------------------------------------------------------------------


def test_model_quantize_writes_a_w8a8_checkpoint(settings: Settings, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    genrec = Path(sys.executable).parent / "genrec"
    env = {**os.environ, "GENREC_MODEL_CACHE": str(settings.models_dir)}
    out = tmp_path / "w8a8"
    proc = subprocess.run(
        [str(genrec), "model", "quantize", "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["model"] == str(out)
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "compressed-tensors"
    src = load_file(Path(model_path(settings)) / "model.safetensors")
    q = load_file(out / "model.safetensors")
    name = "model.layers.0.mlp.down_proj.weight"
    assert q[name].dtype == torch.int8 and q["model.embed_tokens.weight"].dtype == torch.bfloat16
    scale = q[name.replace("weight", "weight_scale")].float()
    # dequantized weights are within half a step of the originals
    err = (q[name].float() * scale - src[name].float()).abs()
    assert torch.all(err <= scale / 2 + 1e-6)
    assert (out / "tokenizer.json").is_file() and not list(tmp_path.glob(".w8a8.*"))
    again = subprocess.run(
        [str(genrec), "model", "quantize", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert again.returncode != 0 and "exists" in again.stderr
