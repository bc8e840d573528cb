"""The catalog item: one model for every loader, store and retriever (genrec.data.catalog_files
reads files into it; genrec.data.movielens reads MovieLens)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from genrec.errors import CatalogError

AttrValue = str | int | float | bool

ITEM_FIELDS = ("id", "title", "description", "category", "tags", "attributes", "popularity")


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
        """The one rule for the text that gets embedded, empty parts left out:
        ``"{title}. {category}. Genres: {tags, comma-separated}. {description}."``
        """
        parts = [self.title]
        if self.category:
            parts.append(self.category)
        if self.tags:
            parts.append("Genres: " + ", ".join(self.tags))
        if self.description:
            parts.append(self.description)
        return ". ".join(p.strip().rstrip(".") for p in parts) + "."


def open_text(path: Path):
    """Read the whole file as UTF-8 (a BOM is dropped); anything else is a CatalogError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"cannot read {path}: {exc.strerror}; check the path") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CatalogError(
            f"{path} is not UTF-8 (bad byte at line {line}); re-save it as UTF-8, "
            f"e.g. iconv -f latin1 -t utf-8"
        ) from exc


def id_key(item_id: str) -> tuple[int, int | str]:
    """Sort key for IDs: numeric ones in numeric order, the others after them, so catalogs,
    users and item indices come out in one stable, natural order."""
    return (0, int(item_id)) if item_id.isdigit() else (1, item_id)
