"""Catalog items and the loaders that read them (JSONL, CSV, MovieLens)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

AttrValue = str | int | float | bool


class Item(BaseModel):
    """One catalog item. `id` is the catalog's own ID, always a string."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    title: str = Field(min_length=1)
    description: str = ""
    category: str = ""
    tags: list[str] = Field(default_factory=list)  # genres for MovieLens
    attributes: dict[str, AttrValue] = Field(default_factory=dict)  # e.g. {"year": 1995}
    popularity: float | None = None

    @field_validator("id", "title")
    @classmethod
    def _strip(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("must not be blank")
        return v

    def embedding_text(self) -> str:
        """The one rule for the text that gets embedded:
        ``"{title}. {category}. Genres: {tags, comma-separated}. {description}"``, empty parts left out.
        """
        parts = [self.title]
        if self.category:
            parts.append(self.category)
        if self.tags:
            parts.append("Genres: " + ", ".join(self.tags))
        if self.description:
            parts.append(self.description)
        return ". ".join(p.strip().rstrip(".") for p in parts) + "."
