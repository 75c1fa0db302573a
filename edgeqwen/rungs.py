"""Rungs (recipes/rungs/*.toml): named sets of quantization choices layered on top of a model's recipe.

A rung is data, like a recipe: k-quant scales, INT8 vocabulary tables, AWQ and scale estimation, a
mixed INT4/INT8 ratio, finer blocks. `--rung NAME` builds one; `--quality auto` (edgeqwen.ladder)
climbs them, smallest first.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from edgeqwen.errors import RecipeError
from edgeqwen.recipes import NncfOverrides, QnnOverrides, QuantizationOverrides, Recipe, recipes_dir
from edgeqwen.schema import load_named


@dataclass(frozen=True)
class Rung:
    name: str
    description: str
    engines: tuple[str, ...]  # registered engines (edgeqwen/backends) the rung applies to
    model_types: tuple[str, ...]
    quantization: QuantizationOverrides = QuantizationOverrides()
    nncf: NncfOverrides = NncfOverrides()
    qnn: QnnOverrides = QnnOverrides()
    effort: int = 0  # among rungs of the same estimated size, the cheaper build is tried first
    path: Path = field(default=Path(), compare=False, metadata={"internal": True})

    def __post_init__(self):
        from edgeqwen.backends import engines

        unknown = [e for e in self.engines if e not in engines()]
        if unknown:
            raise ValueError(f"engines: {', '.join(map(repr, unknown))} not registered; expected some of "
                             f"{', '.join(map(repr, engines()))}")


def rungs_dir() -> Path:
    return recipes_dir() / "rungs"


def rung_names() -> list[str]:
    return sorted(p.stem for p in rungs_dir().glob("*.toml"))


def load_rung(name: str) -> Rung:
    return load_named(Rung, rungs_dir(), name, "rung", RecipeError)


def apply_rung(recipe: Recipe, rung: Rung) -> Recipe:
    """The recipe with the rung's choices on top (a rung's value wins where it sets one)."""

    def overlay(base, top):
        chosen = {k: v for k, v in dataclasses.asdict(top).items() if v is not None}
        return dataclasses.replace(base, **chosen)

    return dataclasses.replace(
        recipe,
        name=f"{recipe.name}+{rung.name}",
        quantization=overlay(recipe.quantization, rung.quantization),
        nncf=overlay(recipe.nncf, rung.nncf),
        qnn=overlay(recipe.qnn, rung.qnn),
    )
