"""Typed configs: a dataclass tree loaded from YAML, with dotted ``key=value`` overrides.

    cfg = load_config(PretrainConfig, "configs/pretrain_toy.yaml", ["optim.lr=0.02", "epochs=3"])

Unknown keys and values of the wrong type are :class:`ConfigError` naming the file and the key.
Override values are parsed as YAML (``3`` is an int, ``0.1`` a float, ``[1, 2]`` a list, ``null``
None), then checked like the file's.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Sequence
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from .errors import UserError

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """A config that cannot be used; the message names the file and the key."""


# What ``amp`` may say in a config (``core.runtime.amp_dtype`` reads it); YAML reads a bare
# ``off``/``true`` as a boolean, so ``False`` means off and ``True`` means auto.
Amp = Literal["auto", "bf16", "fp16", "off"]


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str, where: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, where, prefix=f"{key}.")
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:  # the first member of the union that takes the value
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {key} must be {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            choices = ", ".join(repr(a) for a in get_args(tp))
            raise ConfigError(f"{where}: {key} must be one of {choices}, got {value!r}")
        return value
    if origin in (list, tuple, Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {key} must be a list, got {value!r}")
        (item,) = get_args(tp)[:1] or (Any,)
        items = [_convert(v, item, f"{key}[{i}]", where) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # PyYAML (YAML 1.1) reads 1e-3 as a string; users write it anyway
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
        return value
    raise TypeError(f"config field {key}: unsupported type {tp!r}")


def _build(cls: type[T], data: dict, where: str, prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        section = prefix.rstrip('.') or 'the config'
        raise ConfigError(f"{where}: unknown key {prefix}{unknown[0]} (known keys of {section}: "
                          f"{', '.join(fields)})")
    kwargs = {k: _convert(v, hints[k], f"{prefix}{k}", where) for k, v in data.items()}
    return cls(**kwargs)


def _set_dotted(data: dict, cls: type, key: str, value: Any, where: str) -> None:
    parts = key.split(".")
    node, node_cls = data, cls
    for i, part in enumerate(parts):
        fields = {f.name for f in dataclasses.fields(node_cls)}
        if part not in fields:
            raise ConfigError(f"{where}: unknown key {'.'.join(parts[:i + 1])} (known keys of "
                              f"{'.'.join(parts[:i]) or 'the config'}: {', '.join(sorted(fields))})")
        if i == len(parts) - 1:
            node[part] = value
            return
        sub = typing.get_type_hints(node_cls)[part]
        if not dataclasses.is_dataclass(sub):
            raise ConfigError(f"{where}: {'.'.join(parts[:i + 1])} is a value, not a section")
        node = node.setdefault(part, {})
        node_cls = sub


def load_config(cls: type[T], path: str | os.PathLike | None, overrides: Sequence[str] = (),
                section: str | None = None) -> T:
    """Read ``path`` (YAML) into ``cls``, apply ``key=value`` overrides, check every key and type.
    With ``section``, only that top-level mapping of the file is read (a tool that needs one part
    of a larger config), and overrides are written with or without the ``section.`` prefix."""
    data: dict = {}
    where = os.fspath(path) if path is not None else "defaults"
    if path is not None:
        if not os.path.isfile(path):
            raise ConfigError(f"{where}: no such config file")
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{where}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: the top level must be a mapping of keys, got {type(data).__name__}")
        if section is not None:
            data = data.get(section) or {}
            if not isinstance(data, dict):
                raise ConfigError(f"{where}: {section} must be a mapping of keys")
    for item in overrides:
        if section is not None:
            item = item.removeprefix(f"{section}.")
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: write overrides as key=value (e.g. optim.lr=0.01)")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        _set_dotted(data, cls, key.strip(), value, f"{where} (override {item})")
    return _build(cls, data, where)


def load_config_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """A config from plain data (as :func:`to_dict` wrote it into a checkpoint), checked the same way."""
    return _build(cls, dict(data), where)


def to_dict(cfg: Any) -> dict:
    """The config as plain data (for checkpoints, logs and the export's metadata)."""
    return dataclasses.asdict(cfg)
