"""Each setting declared once: a dataclass field whose metadata carries all that is known about it.

``setting(...)`` makes that field. From the fields come the checks (``check_rules``), the recipe keys
(``recipe_keys``), the command-line flags with their help (``add_flags``, ``flag_values``) and what of a run
decides its result (``deciding_values``), so a new option is one field, not one entry in each of them.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass

from .errors import CocktailError


@dataclass(frozen=True)
class Setting:
    """What a field's metadata says about it (see ``setting``)."""

    help: str | None
    rule: Callable[[object], str | None] | None
    flag: bool | str
    parse: Callable[[str], object] | None
    nargs: str | None
    choices: Iterable | None
    recipe: bool
    deciding: bool
    record_default: bool
    stage: str | None


def setting(default=MISSING, *, default_factory=MISSING, help: str | None = None,
            rule: Callable[[object], str | None] | None = None, flag: bool | str = False,
            parse: Callable[[str], object] | None = None, nargs: str | None = None, choices: Iterable | None = None,
            recipe: bool = True, deciding: bool = True, record_default: bool = True, stage: str | None = None):
    """A dataclass field declaring one setting.

    help: what it does (its flag's help); rule: value → None, or what is wrong with it ("must be >= 1");
    flag: True for ``--<name>``, or the name of a flag several settings share; parse, nargs, choices: how
    the flag is read (default: as the type of ``default``, text for None); recipe: whether a recipe sets it by its name;
    deciding: whether it decides a result (otherwise it only says where results go, how they are shown or
    how often saved); record_default: False leaves it out of records while at its default, so that records
    made before it existed (and the stages they name) stay valid; stage: the one stage of a run whose inputs
    it decides, when it is not every stage's (a merge's "merge").
    """
    return field(default=default, default_factory=default_factory,
                 metadata={"setting": Setting(help, rule, flag, parse, nargs, choices, recipe, deciding,
                                              record_default, stage)})


def declared(settings) -> list[tuple[Field, Setting]]:
    """The fields of a settings class (or object) made with ``setting``, in declaration order."""
    return [(f, f.metadata["setting"]) for f in fields(settings) if "setting" in f.metadata]


def check_rules(settings) -> None:
    """Raise one line naming the first setting of ``settings`` (an object) that breaks its rule."""
    for f, spec in declared(settings):
        value = getattr(settings, f.name)
        problem = spec.rule(value) if spec.rule is not None else None
        if problem:
            raise CocktailError(f"{f.name} {problem} (got {value!r})")


def recipe_keys(settings) -> list[str]:
    """The settings a recipe may set by name."""
    return [f.name for f, spec in declared(settings) if spec.recipe]


def deciding_values(settings, declared_by: type | None = None, stage: str | None = None) -> dict:
    """The settings that decide a result, as JSON values (nested settings likewise); ``declared_by``: only
    those that class declares; ``stage``: only those declared for that stage."""
    values = {}
    for f, spec in declared(declared_by or settings):
        value = getattr(settings, f.name)
        if stage is not None and spec.stage != stage:
            continue
        if spec.deciding and (spec.record_default or value != f.default):
            values[f.name] = deciding_values(value) if is_dataclass(value) else _json(value)
    return values


def _json(value):
    return list(value) if isinstance(value, tuple | list) else value


def help_of(settings, name: str) -> str | None:
    return next(spec.help for f, spec in declared(settings) if f.name == name)


def add_flags(parser: argparse.ArgumentParser, shown, help_overrides: dict | None = None) -> None:
    """A flag for each flag setting of ``shown``'s class, its help ending in ``shown``'s value as the default.

    A flag not given stays out of the parsed arguments, so that what lies under the command line (a recipe,
    the defaults) decides the setting.
    """
    for flag, settings in _flags(shown).items():
        f, spec = settings[0]
        text = (help_overrides or {}).get(flag, spec.help)
        default = _shown(getattr(shown, f.name))
        if default is not None:
            text = f"{text + ' ' if text else ''}(default: {default})"
        if isinstance(f.default, bool):
            reading = {"action": "store_true"}
        else:
            reading = {"type": spec.parse or (str if f.default is None else type(f.default)), "nargs": spec.nargs,
                       "choices": list(spec.choices) if spec.choices is not None else None}
        parser.add_argument(f"--{flag}", default=argparse.SUPPRESS, help=text, **reading)


def flag_values(args: argparse.Namespace, settings) -> dict:
    """The settings the command line gave, by name (a shared flag gives each of its settings)."""
    given = vars(args)
    return {f.name: given[flag] for flag, shared in _flags(settings).items() if flag in given for f, _ in shared}


def _flags(settings) -> dict[str, list[tuple[Field, Setting]]]:
    flags = {}
    for f, spec in declared(settings):
        if spec.flag:
            flags.setdefault(f.name if spec.flag is True else spec.flag, []).append((f, spec))
    return flags


def _shown(value) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    return f"{value:g}" if isinstance(value, int | float) else str(value)


# -- rules ------------------------------------------------------------------------------------------


def number_rule(low=None, high=None, low_open=False, high_open=False, optional=False, integer=False):
    """A rule for one numeric setting: the right type, finite, within [low, high] (or open ends)."""
    def rule(value):
        if value is None and optional:
            return None
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            return f"must be {'an integer' if integer else 'a number'}{' or null' if optional else ''}"
        if not math.isfinite(value):
            return "must be finite"
        if low == 0 and low_open and value <= 0:
            return "must be positive"
        if low is not None and (value < low or (low_open and value == low)):
            return f"must be {'>' if low_open else '>='} {low}"
        if high is not None and (value > high or (high_open and value == high)):
            return f"must be {'<' if high_open else '<='} {high}"
        return None
    return rule


def text_rule(optional=True):
    return lambda value: None if isinstance(value, str) or (optional and value is None) else "must be text"


def boolean_rule(value) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def choice_rule(*choices: str, optional=False):
    """One of ``choices`` (or None when optional)."""
    def rule(value):
        if value in choices or (optional and value is None):
            return None
        return f"must be {' or '.join(repr(choice) for choice in choices)}"
    return rule
