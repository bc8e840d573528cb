"""Model profiles: what a client names in `model` and what that fixes about a recommendation.

Every server has `genrec` (the settings' defaults) and one profile per decoding mode
(`genrec-rank`, `genrec-generate`, `genrec-describe`). Settings may add more, or redefine these,
under `profiles` (TOML `[profiles.NAME]` tables, or GENREC_PROFILES as JSON)::

    [profiles.genrec-quick]
    mode = "rank"
    k = 5
    candidates = 10
    description = "five fast picks"
"""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genrec.errors import ConfigError, GenrecError, NotFound
from genrec.settings import Mode, Settings

MODES: tuple[Mode, ...] = get_args(Mode)


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    mode: Mode
    template: str | None = None  # the prompt template; None = the mode's default
    k: int = Field(ge=1, le=100)
    candidates: int = Field(ge=1, le=200)
    filters: dict[str, Any] | None = None  # always ANDed with a request's own filters
    response_template: str = "response"  # prompts/<name>.j2 renders the assistant text
    description: str = ""


def default_profiles(settings: Settings) -> dict[str, Profile]:
    base = {"k": settings.k, "candidates": settings.candidates}
    profiles = {
        "genrec": Profile(
            name="genrec",
            mode=settings.mode,
            template=settings.template,
            description=f"the configured default ({settings.mode} mode)",
            **base,
        )
    }
    for mode in MODES:
        name = f"genrec-{mode}"
        profiles[name] = Profile(name=name, mode=mode, description=f"{mode} mode", **base)
    return profiles


def load_profiles(settings: Settings) -> dict[str, Profile]:
    """The defaults, then the settings' profiles (which may override a default by name)."""
    profiles = default_profiles(settings)
    for name, spec in settings.profiles.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"profile {name!r} must be a table of options, got {spec!r}")
        base = profiles.get(name)
        merged: dict[str, Any] = (
            base.model_dump()
            if base
            else {
                "k": settings.k,
                "candidates": settings.candidates,
                "mode": settings.mode,
            }
        )
        if "mode" in spec and base and "template" not in spec:
            merged["template"] = None  # a new mode does not inherit the old mode's template
        merged.update(spec, name=name)
        try:
            profiles[name] = Profile.model_validate(merged)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"profile {name!r}: {where}: {err['msg']}") from exc
    check_profiles(profiles, settings)
    return profiles


def check_profiles(profiles: dict[str, Profile], settings: Settings) -> None:
    """A profile's template must exist and serve its mode, and its filters must be a valid
    where: checked at start-up, so a bad profile is a ConfigError naming it rather than a 400
    blaming the client on every request."""
    from genrec.index import validate_where
    from genrec.prompts import PromptRegistry

    prompts = PromptRegistry(settings)
    for name, profile in profiles.items():
        try:
            if profile.template is not None:
                prompts.for_request(profile.template, profile.mode)
            validate_where(profile.filters, param="filters")
        except GenrecError as exc:
            raise ConfigError(f"profile {name!r}: {exc.param or 'profile'}: {exc.message}") from exc


def get_profile(profiles: dict[str, Profile], name: str) -> Profile:
    try:
        return profiles[name]
    except KeyError:
        known = ", ".join(sorted(profiles))
        raise NotFound(
            f"the model {name!r} does not exist; use one of: {known} (GET /v1/models)",
            param="model",
            code="model_not_found",
        ) from None
