"""Run configs: YAML -> typed dataclass, with `key=value` overrides, validated cheaply.

    cfg = load_config(DataBuildConfig, "instruct_data/configs/synthface.yaml", ["seed=1", "tasks.expression={}"])

Overrides use dotted keys and YAML values (`lora.r=16`, `tasks=[a, b]`). Unknown keys fail with
"did you mean ...". `check_call(fn, kwargs)` binds keys to a builder's signature and checks the
values against its annotations without calling it (torchtune's config validation), so a config
can be checked without building; `at_least` / `between` check ranges.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    pass


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values, not {type(data).__name__}")
    return data


def overrides_epilog(example: str) -> str:
    """The line each recipe's --help ends with."""
    return (f"Further arguments key=value override the config: dotted keys, YAML values, e.g. {example}. "
            "Unknown keys fail with 'did you mean'.")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`a.b=1` sets data["a"]["b"] = 1 (creating mappings on the way)."""
    for item in overrides:
        if item.startswith("-"):  # argparse leaves options it does not know among the overrides
            raise ConfigError(f"unknown option {item.partition('=')[0]!r}; --help lists the options")
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a mapping")
        node[leaf] = yaml.safe_load(raw)
    return data


def _unknown(name: str, valid: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; valid keys: {', '.join(sorted(valid))}"
    return ConfigError(f"unknown key {name!r} in {where.rstrip(':')}{hint}")


def _key(where: str, name: str) -> str:
    """The dotted name of key `name` inside `where` ("run.yaml:" is a file's top level)."""
    return f"{where} {name}" if where.endswith(":") else f"{where}.{name}"


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass `cls` from a mapping, recursing into dataclass-typed fields; strict on keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise _unknown(key, list(fields), where)
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], _key(where, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where.rstrip(':')} is missing the required key {name!r}")
    return cls(**kwargs)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value or {}, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, where) if len(args) == 1 else value
    if origin is dict and value is not None:
        key_t, val_t = typing.get_args(hint) or (Any, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        for k in value:  # a mistyped key of a Literal-keyed mapping would silently mean "default"
            if typing.get_origin(key_t) is typing.Literal and k not in typing.get_args(key_t):
                raise _unknown(k, list(typing.get_args(key_t)), where)
        return {k: _convert(val_t, v, _key(where, k)) for k, v in value.items()}
    if origin in (list, tuple) and value is not None:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        (item_t, *_) = typing.get_args(hint) or (Any,)
        return origin(_convert(item_t, v, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):  # 1.5 is no seed
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    if hint is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if hint is float:
        return float(value)
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if typing.get_origin(hint) is typing.Literal and value not in typing.get_args(hint):
        choices = [str(c) for c in typing.get_args(hint)]
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint_text = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(f"{where} must be one of {', '.join(choices)}, got {value!r}{hint_text}")
    return value


def load_config(cls: type[T], path: str | Path, overrides: list[str] | None = None) -> T:
    data = apply_overrides(read_yaml(path), list(overrides or []))
    return from_dict(cls, data, f"{path}:")


def load_checked(cls: type[T], path: str | Path, overrides: list[str], validate: Callable[[T], None]) -> T:
    """`load_config`, then the recipe's `validate`; every ConfigError names the config file."""
    cfg = load_config(cls, path, overrides)
    try:
        validate(cfg)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return cfg


def check_call(fn: Callable[..., Any], kwargs: dict[str, Any], where: str) -> None:
    """Raise ConfigError if `fn(**kwargs)` would fail to bind (unknown or missing arguments) or
    a value does not fit the parameter's annotation (`n_identities: int` given "abc")."""
    try:
        inspect.signature(fn).bind(**kwargs)
    except TypeError as e:
        params = list(inspect.signature(fn).parameters)
        unknown = [k for k in kwargs if k not in params]
        if unknown and not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values()):
            raise _unknown(unknown[0], params, where) from None
        raise ConfigError(f"{where}: {e}") from None
    hints = typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    for name, value in kwargs.items():
        if name in hints:
            _convert(hints[name], value, f"{where}.{name}")


def at_least(value: float | None, low: float, where: str) -> None:
    """ConfigError unless `value` is None or >= low."""
    if value is not None and value < low:
        raise ConfigError(f"{where} must be >= {low}, got {value!r}")


def positive(value: float | None, where: str) -> None:
    """ConfigError unless `value` is None or > 0."""
    if value is not None and value <= 0:
        raise ConfigError(f"{where} must be > 0, got {value!r}")


def between(value: float | None, low: float, high: float, where: str, *, closed: bool = False) -> None:
    """ConfigError unless `value` is None or inside (low, high) ([low, high] when `closed`)."""
    if value is None:
        return
    if not (low <= value <= high if closed else low < value < high):
        interval = f"[{low}, {high}]" if closed else f"({low}, {high})"
        raise ConfigError(f"{where} must be in {interval}, got {value!r}")
