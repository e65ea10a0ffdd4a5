"""The installed commands (``cocktail-merge`` …, see pyproject.toml), one module each; ``scripts/<name>.py``
runs the same command from a checkout. Each entry point imports its module only when it runs."""

import importlib

from ..errors import run_script


def _run(name: str) -> None:
    run_script(importlib.import_module(f"{__name__}.{name}").main)


def cocktail_merge() -> None:
    _run("merge")


def cocktail_evaluate() -> None:
    _run("evaluate")


def cocktail_compare() -> None:
    _run("compare")


def cocktail_convert() -> None:
    _run("convert")


def cocktail_project() -> None:
    _run("project")


def cocktail_train_source() -> None:
    _run("train_source")


def cocktail_reproduce() -> None:
    _run("reproduce")
