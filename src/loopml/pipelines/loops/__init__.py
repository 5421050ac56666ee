"""The loops loopml ships as pipeline files (package data): ``retrain``, the default
retrain-and-deploy loop, ``retrain-labels``, the same loop learning from a deployment's
labelled predictions, and ``train-code``, a codeset's own training code trained,
registered, gated and deployed. ``loopml pipelines apply --builtin retrain`` applies one
(``loopml pipelines assign train-code --codeset NAME`` applies it when missing)."""

from __future__ import annotations

from importlib import resources

from loopml.core.errors import NotFoundError


def names() -> list[str]:
    """The shipped loops, sorted."""
    folder = resources.files(__name__)
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def text(name: str) -> str:
    """The YAML of the shipped loop ``name``.

    Raises:
        NotFoundError: no such loop (the message lists the shipped ones).
    """
    if name not in names():
        raise NotFoundError(
            f"no built-in pipeline {name!r}: expected one of {', '.join(names())}",
            details={"builtin": name},
        )
    return resources.files(__name__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
