"""(placeholder during development: commands are added by the owner of this area)"""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    pass
