"""Command-line flags made from config dataclasses, so every field is settable and no list is kept by hand.

    add_dataclass_args(parser, TrainConfig, skip={"model"})     # --batch-size, --lr, --average/--no-average, ...
    cfg = dataclass_from_args(TrainConfig, args, skip={"model"}, model=...)

A field `max_minutes: float = 0.0` becomes `--max-minutes` (type float, default 0.0); a bool becomes a
`--name/--no-name` pair; a `Literal[...]` gets its choices; a `tuple[float, ...]` takes one or more values; a nested
dataclass gets its own flags under `--<field>-...`. A field of any other type must be skipped and given by the
caller (a dict of model overrides, say), so a field is never silently left out.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Collection
from typing import Any, Literal, TypeVar

T = TypeVar("T")
_SCALARS = (int, float, str)


def add_dataclass_args(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type[Any],
    *,
    prefix: str = "",
    skip: Collection[str] = (),
) -> None:
    """One flag per field of `cls` (defaults from the class); flag names are `--{prefix}{field}` with dashes."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind, default = hints[f.name], _default(f)
        name, dest = f"--{(prefix + f.name).replace('_', '-')}", _dest(prefix, f.name)
        help_text = " ".join(filter(None, [f.metadata.get("help"), "(default: %(default)s)"]))
        if dataclasses.is_dataclass(kind):
            add_dataclass_args(parser, kind, prefix=f"{prefix}{f.name}_")  # type: ignore[arg-type]
        elif kind is bool:
            # BooleanOptionalAction says the default itself.
            help_bool = f.metadata.get("help", "")
            parser.add_argument(name, dest=dest, action=argparse.BooleanOptionalAction, default=default, help=help_bool)
        elif typing.get_origin(kind) is Literal:
            choices = typing.get_args(kind)
            parser.add_argument(name, dest=dest, choices=choices, default=default, help=help_text)
        elif typing.get_origin(kind) is tuple:
            item = _tuple_item(kind, f.name)
            parser.add_argument(name, dest=dest, type=item, nargs="+", default=default, help=help_text)
        else:
            scalar = _scalar(kind, f.name)
            parser.add_argument(name, dest=dest, type=scalar, default=default, help=help_text)


def dataclass_from_args(
    cls: type[T], args: argparse.Namespace, *, prefix: str = "", skip: Collection[str] = (), **given: Any
) -> T:
    """The `cls` instance the flags of `add_dataclass_args(..., cls, prefix=prefix, skip=skip)` describe.

    Skipped fields take their value from `given` (or their default when not given)."""
    return cls(**given, **values_from_args(cls, args, prefix=prefix, skip=skip))


def values_from_args(
    cls: type[Any], args: argparse.Namespace, *, prefix: str = "", skip: Collection[str] = ()
) -> dict[str, Any]:
    """The flag values of `cls`'s fields as a dict (for configs kept as override dicts)."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            values[f.name] = dataclass_from_args(kind, args, prefix=f"{prefix}{f.name}_")  # type: ignore[arg-type]
            continue
        value = getattr(args, _dest(prefix, f.name))
        values[f.name] = tuple(value) if typing.get_origin(kind) is tuple else value
    return values


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"field {f.name} has no default: skip it and give its value")


def _dest(prefix: str, name: str) -> str:
    return f"{prefix}{name}"


def _tuple_item(kind: Any, name: str) -> type:
    args = typing.get_args(kind)
    if len(args) != 2 or args[1] is not Ellipsis or args[0] not in _SCALARS:
        raise TypeError(f"field {name}: only tuple[int | float | str, ...] can be a flag, not {kind}")
    return typing.cast(type, args[0])


def _scalar(kind: Any, name: str) -> type:
    if kind in _SCALARS:
        return typing.cast(type, kind)
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(options) == 1 and options[0] in _SCALARS:
            return typing.cast(type, options[0])  # `X | None`: a value given is an X; the default may be None
    raise TypeError(f"field {name} of type {kind} cannot be a flag: skip it and give its value")
