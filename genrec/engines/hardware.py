"""What the machine computes fast, read without importing torch.

bf16 is only fast where the CPU has it natively (AVX-512 BF16 or AMX); elsewhere torch emulates
it: measured on an AVX2-only EPYC, a 512x512 bf16 matmul ran at 1.3 GFLOP/s against 97 in fp32,
and a rank request took about 90 s in bf16 against 1.2 s in fp32. So ``dtype = "auto"`` is bf16
on a GPU or a bf16-capable CPU and fp32 on any other CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@cache
def cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def has_gpu() -> bool:
    return Path("/dev/nvidia0").exists() or Path("/dev/kfd").exists()


def resolve_dtype(dtype: str) -> str:
    """The dtype the in-process engine runs: ``auto`` decided by the machine, else as given."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if has_gpu() or cpu_flags() & _BF16_FLAGS else "float32"


# -- thread binding ------------------------------------------------------------------------------
#
# vLLM's CPU build runs the model in a worker process whose OpenMP threads it pins to cores
# (VLLM_CPU_OMP_THREADS_BIND, read when that process spawns). Its default ("auto") reserves one
# core per rank for the EngineCore scheduler process, which busy-polls while requests are in
# flight (vllm/utils/ompmultiprocessing.py). On a big machine that costs little; on 2 cores it
# halves the model's threads -- but pinned threads wait for their slowest member at every
# operator, so where the cores are shared (the scheduler's polling, genrec itself, other
# processes) one preempted thread stalls them all, and the shorter each operator runs, the more
# those waits weigh. Measured on 2 cores, side by side in one run each (notes/perf.md):
# - AMD Zen 4, no AMX (bf16 matmuls ~200 GFLOP/s a core): every core 1.7x faster than one thread;
# - Intel Xeon with AMX (~500-1000 GFLOP/s a core), shared: every core 2.1-7.7x SLOWER at
#   concurrency 1 in all five runs, even at moments when a 2-thread GEMM alone did scale.
# A start-up probe (timing the model's matmuls on n and n-1 threads, with and without a process
# polling like the scheduler) swung from 15 to 1,100 GFLOP/s under the same shared load: a coin
# flip, so "auto" follows the measurements instead: every core on small machines whose cores are
# slow at matmuls (no AMX), vLLM's reservation where a core has AMX or is a small share of the
# machine. GENREC_CPU_THREADS_BIND overrides it; `genrec bench recommend --binding A --binding B`
# measures the choices on one's own machine.

_BIND_VARS = ("VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_NUM_OF_RESERVED_CPU")
# What the user's environment said before genrec set anything (genrec sets these per engine
# start, so a later start must not mistake genrec's own value for the user's).
_USER_BIND_ENV = {name: os.environ.get(name) for name in _BIND_VARS}
# From this many cores on, the core vLLM reserves for its scheduler is a small share (<= 1/8).
RESERVE_FROM_CORES = 8
# Matrix units that make one core fast enough for operator-level waits to dominate.
_MATRIX_FLAGS = frozenset({"amx_bf16", "amx_tile"})
BIND_POLICIES = ("auto", "all", "vllm", "nobind")


@dataclass(frozen=True)
class ThreadBinding:
    """How the engine's model threads are placed: the policy asked for, what it resolved to,
    and the environment that tells vLLM (``None`` = remove the variable: vLLM's default)."""

    requested: str
    policy: str  # all | vllm | nobind | list | env
    cpus: tuple[int, ...]  # the cores the model's threads run on
    env: dict[str, str | None]
    reason: str = ""  # why auto chose it

    @property
    def threads(self) -> int:
        return len(self.cpus)

    def describe(self) -> dict[str, object]:
        return {
            "threads_bind": self.requested,
            "policy": self.policy,
            "threads": self.threads,
            "cpus": cpu_list_text(self.cpus),
            "machine_cpus": len(allowed_cpus()),
            **({"reason": self.reason} if self.reason else {}),
        }

    def apply(self) -> None:
        """Set (or clear) vLLM's binding variables; call before the engine process spawns."""
        for name, value in self.env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def allowed_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on (cgroup/taskset aware), sorted."""
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return tuple(range(os.cpu_count() or 1))


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """``"0-3,6"`` -> (0, 1, 2, 3, 6); ValueError on anything else."""
    cpus: set[int] = set()
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"not a CPU list: {text!r} (expected e.g. 0-3 or 0,2,4)")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first:
            raise ValueError(f"not a CPU list: {text!r} ({part} runs backwards)")
        cpus.update(range(first, last + 1))
    return tuple(sorted(cpus))


def cpu_list_text(cpus: tuple[int, ...]) -> str:
    """(0, 1, 2, 5) -> ``"0-2,5"``."""
    runs: list[str] = []
    for cpu in cpus:
        if runs and cpu == _run_end(runs[-1]) + 1:
            runs[-1] = f"{runs[-1].split('-')[0]}-{cpu}"
        else:
            runs.append(str(cpu))
    return ",".join(runs)


def _run_end(run: str) -> int:
    return int(run.rpartition("-")[2])


def check_threads_bind(value: str) -> str:
    """The setting's value if it is a policy name or a CPU list; ValueError otherwise."""
    if value not in BIND_POLICIES:
        parse_cpu_list(value)
    return value


def choose_binding(requested: str = "auto") -> ThreadBinding:
    """Resolve ``GENREC_CPU_THREADS_BIND``: ``auto`` (decide from the machine; a binding the
    user set in vLLM's own variables wins), ``all`` (every allowed core), ``vllm`` (vLLM's
    default: one core reserved), ``nobind`` (no pinning, all cores), or a CPU list (``0-3``)."""
    cpus = allowed_cpus()
    if requested != "auto":
        return _binding(requested, requested, cpus)
    user = _USER_BIND_ENV["VLLM_CPU_OMP_THREADS_BIND"]
    if user is not None or _USER_BIND_ENV["VLLM_CPU_NUM_OF_RESERVED_CPU"] is not None:
        return replace(_from_user_env(cpus), reason="set in vLLM's environment variables")
    policy, reason = auto_policy(len(cpus), cpu_flags())
    return replace(_binding("auto", policy, cpus), reason=reason)


def auto_policy(cores: int, flags: frozenset[str]) -> tuple[str, str]:
    """``(policy, reason)`` of ``auto`` for a machine with ``cores`` allowed cores and these CPU
    flags (see the measurements above)."""
    if cores == 1:
        return "all", "one core"
    if cores >= RESERVE_FROM_CORES:
        return "vllm", f"{cores} cores: the scheduler's core is a small share"
    if flags & _MATRIX_FLAGS:
        return "vllm", f"{cores} cores with AMX: pinned threads on shared cores measured slower"
    return "all", f"{cores} cores without AMX: every core measured faster"


def _binding(requested: str, policy: str, cpus: tuple[int, ...]) -> ThreadBinding:
    if policy == "vllm":
        # vLLM's auto-binding keeps the last core(s) for the scheduler
        reserved = 1 if len(cpus) > 1 else 0
        model = cpus[: len(cpus) - reserved]
        return ThreadBinding(requested, "vllm", model, dict.fromkeys(_BIND_VARS))
    if policy == "nobind":
        env = {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "VLLM_CPU_NUM_OF_RESERVED_CPU": None}
        return ThreadBinding(requested, "nobind", cpus, env)
    model = cpus if policy == "all" else parse_cpu_list(policy)
    env = {"VLLM_CPU_OMP_THREADS_BIND": cpu_list_text(model), "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    return ThreadBinding(requested, "all" if policy == "all" else "list", model, env)


def _from_user_env(cpus: tuple[int, ...]) -> ThreadBinding:
    bind = _USER_BIND_ENV["VLLM_CPU_OMP_THREADS_BIND"] or "auto"
    env = dict(_USER_BIND_ENV)
    if bind == "nobind":
        model = cpus
    elif bind == "auto":
        reserved = int(_USER_BIND_ENV["VLLM_CPU_NUM_OF_RESERVED_CPU"] or 1)
        model = cpus[: max(1, len(cpus) - reserved)]
    else:
        try:
            model = parse_cpu_list(bind.split("|")[0])
        except ValueError:
            model = cpus
    return ThreadBinding("auto", "env", model, env)
