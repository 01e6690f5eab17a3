"""Typed, validated configs shared by every method: one dataclass per method.

Declare a field with `option(default, help, low=..., high=..., choices=...)`; `validate`
then refuses a bad value before anything compiles, with a message that names the field and
the allowed range, and `add_arguments` / `from_args` turn the dataclass into command-line
flags (`--field-name`, booleans as `--flag/--no-flag`, tuples as comma-separated lists).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import typing
from typing import Any


class ConfigError(ValueError):
    """An invalid config value: the message names the field and what is allowed."""


def option(
    default: Any,
    help: str,  # noqa: A002 - argparse's word
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: tuple | None = None,
) -> Any:
    """A dataclass field with a help text and an allowed range or set of choices."""
    meta = dict(help=help, low=low, high=high, low_open=low_open, high_open=high_open)
    meta["choices"] = choices
    return dataclasses.field(default=default, metadata=meta)


def time_budget_option() -> Any:
    """The `time_budget_s` field of every trainer (`rlax_zoo.runner.run` and `drive_chunks`)."""
    return option(
        0.0,
        "Stop training early, checkpointed, before a chunk that would take the training time "
        "past this many seconds, resumes included (0: no limit); the run folder records the "
        "steps reached.",
        low=0.0,
    )


def _range_text(meta: dict) -> str:
    lo, hi = meta["low"], meta["high"]
    left = "(" if meta["low_open"] or lo is None else "["
    right = ")" if meta["high_open"] or hi is None else "]"
    lo_s = "-inf" if lo is None else f"{lo:g}"
    hi_s = "inf" if hi is None else f"{hi:g}"
    return f"{left}{lo_s}, {hi_s}{right}"


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(config) -> None:
    """Check every field's type, range and choices, then the config's own `check()`."""
    types = _field_types(type(config))
    for f in dataclasses.fields(config):
        value, meta, name = getattr(config, f.name), f.metadata, f.name
        kind = types[f.name]
        if kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{name}: must be true or false, got {value!r}")
            continue
        if kind is int and not _is_int(value):
            raise ConfigError(f"{name}: must be an integer, got {value!r}")
        if kind is str and not isinstance(value, str):
            raise ConfigError(f"{name}: must be text, got {value!r}")
        if typing.get_origin(kind) is tuple and not (
            isinstance(value, tuple) and all(_is_int(v) for v in value)
        ):
            raise ConfigError(f"{name}: must be a tuple of integers, got {value!r}")
        if kind is float:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ConfigError(f"{name}: must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ConfigError(f"{name}: must be finite, got {value!r}")
        if meta.get("choices") is not None and value not in meta["choices"]:
            raise ConfigError(f"{name}: must be one of {list(meta['choices'])}, got {value!r}")
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if not isinstance(v, int | float):
                continue
            lo, hi = meta.get("low"), meta.get("high")
            bad_lo = lo is not None and (v <= lo if meta["low_open"] else v < lo)
            bad_hi = hi is not None and (v >= hi if meta["high_open"] else v > hi)
            if bad_lo or bad_hi:
                raise ConfigError(f"{name}: must be in {_range_text(meta)}, got {value!r}")
    check = getattr(config, "check", None)
    if check is not None:
        check()


def _parse_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from e


def add_arguments(
    parser: argparse.ArgumentParser,
    cls,
    aliases: dict[str, str] | None = None,
    skip: tuple[str, ...] = (),
):
    """Add one flag per field of the dataclass `cls` (defaults shown in --help), except the
    fields named in `skip`."""
    aliases = aliases or {}
    types = _field_types(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        names = [flag] + ([aliases[f.name]] if f.name in aliases else [])
        meta, kind = f.metadata, types[f.name]
        text = meta.get("help", "").replace("%", "%%")  # argparse formats help with %
        if meta.get("choices") is None and (
            meta.get("low") is not None or meta.get("high") is not None
        ):
            text += f" Allowed: {_range_text(meta)}."
        if kind is bool:
            parser.add_argument(
                *names,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{text} (default: {f.default})",
            )
            continue
        parse = _parse_tuple if typing.get_origin(kind) is tuple else kind
        choices = meta.get("choices")
        parser.add_argument(
            *names,
            dest=f.name,
            type=parse,
            default=None,
            choices=choices,
            help=f"{text} (default: {f.default})",
        )


def from_args(cls, namespace: argparse.Namespace, base=None):
    """Build `cls` from parsed flags, validated; flags left unset keep `base`'s values (or
    the defaults). A field out of range raises ConfigError naming it."""
    base = base if base is not None else cls()
    updates = {
        f.name: getattr(namespace, f.name)
        for f in dataclasses.fields(cls)
        if getattr(namespace, f.name, None) is not None
    }
    config = dataclasses.replace(base, **updates)
    validate(config)
    return config


def replace_given(config, **values):
    """`config` with each field in `values` that is not None replaced, then validated (a
    command's optional overrides of a run's saved config)."""
    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return config
    config = dataclasses.replace(config, **given)
    validate(config)
    return config


def parse_overrides(cls, items: list[str], flag: str = "--set") -> dict[str, Any]:
    """`["field=value", ...]` (a benchmark's --set flags) -> {field: value typed as the
    dataclass `cls` declares it}; an unknown field raises ConfigError naming it and `flag`."""
    types = _field_types(cls)
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in types:
            raise ConfigError(
                f"{flag} {item!r}: expected FIELD=VALUE with FIELD one of {sorted(types)}"
            )
        kind = types[name]
        try:
            if kind is bool:
                out[name] = _BOOL_WORDS[text.strip().lower()]
            elif typing.get_origin(kind) is tuple:
                out[name] = _parse_tuple(text)
            else:
                out[name] = kind(text)
        except (KeyError, ValueError, argparse.ArgumentTypeError):
            wanted = {bool: "true or false", int: "an integer", float: "a number"}.get(
                kind, "comma-separated integers" if typing.get_origin(kind) is tuple else "text"
            )
            raise ConfigError(f"{flag} {item!r}: {name} must be {wanted}") from None
    return out


_BOOL_WORDS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def to_json(config) -> str:
    """The config as a sorted, indented JSON object (the run folder's config.json)."""
    return json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True)


def from_json(cls, text: str, source: str = "config file"):
    """Rebuild a config saved by `to_json` (tuples come back from JSON lists); text that is
    not a JSON object of the config's fields raises ConfigError naming `source` (a path)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{source}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: must hold a JSON object, got {type(raw).__name__}")
    types = _field_types(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - known
    if unknown:
        names = sorted(unknown)
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        raise ConfigError(
            f"{source}: fields unknown to {cls.__name__} {names[:5]}{more} (a run of "
            "another method?)"
        )
    for name, value in raw.items():
        if typing.get_origin(types[name]) is tuple:
            if not isinstance(value, list):
                raise ConfigError(f"{source}: {name} must be a list, got {value!r}")
            raw[name] = tuple(value)
    return cls(**raw)
