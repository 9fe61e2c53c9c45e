"""The CLI's flags, generated from the config dataclasses with ``transformers.HfArgumentParser``
(as TRL does), so the command line, the pipeline file and the web forms share one set of names,
defaults, bounds and help texts: the fields of :mod:`icon2engine.config`.

A field ``gamma_plus`` becomes ``--gamma_plus`` and ``--gamma-plus``; its ``metadata["help"]`` is
the help text and its default the flag's default. On top of ``HfArgumentParser``:

- tuples read as text: ``layers`` as ``8-15`` or ``8,9,10``; a float grid as ``0.02,0.05,0.1``;
- an optional number reads ``none`` (or ``off``) as None;
- a nested config (``GateConfig.quality``) is left at its default;
- ``metadata["cli"]`` may hold ``aliases`` (other spellings, e.g. ``--lr``), ``choices``, and
  ``negative`` (a flag that sets a bool to False, e.g. ``--no-gate``, with ``negative_help``).

This module imports no torch: ``icon2 generate --help`` stays fast.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from transformers import HfArgumentParser
from transformers.hf_argparser import string_to_bool

from .errors import ConfigError
from .formats import parse_layers

__all__ = ["ConfigArgumentParser", "config_from_args"]

OFF = ("none", "off")


def _optional_inner(tp: Any) -> tuple[Any, bool]:
    """``X | None`` → (X, True); anything else → (tp, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _reader(name: str, tp: Any, optional: bool):
    """An argparse ``type=`` for a tuple or an optional number; None when HfArgumentParser's own will do."""
    if typing.get_origin(tp) is tuple:
        element = (typing.get_args(tp) or (str,))[0]

        def read(text: str):
            if optional and text.strip().lower() in OFF + ("auto",):
                return None
            if element is int:
                return parse_layers(text)
            try:
                return tuple(element(x) for x in text.split(",") if x.strip())
            except ValueError:
                raise ConfigError(f"cannot read {text!r}; write comma-separated values, e.g. 0.02,0.05,0.1") from None

    elif optional and tp in (int, float):

        def read(text: str):
            if text.strip().lower() in OFF:
                return None
            try:
                return tp(text)
            except ValueError:
                raise ConfigError(f"cannot read {text!r}; write a number, or 'none' for off") from None

    else:
        return None

    def checked(text: str):
        try:
            return read(text)
        except ConfigError as exc:  # argparse then prints "argument --layers: <message>"
            raise argparse.ArgumentTypeError(str(exc)) from None

    checked.__name__ = name
    return checked


class ConfigArgumentParser(HfArgumentParser):
    """``HfArgumentParser`` for the engine's configs (see the module docstring)."""

    def add_config(self, cls: type, prefix: str) -> None:
        """Add ``cls``'s fields as ``--<prefix>-<field>`` (dest ``<prefix>_<field>``), for a config
        whose names would clash with another's: ``JudgeConfig.model`` beside ``--model``."""
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.init:
                named = dataclasses.field(default=f.default, default_factory=f.default_factory, metadata=f.metadata)
                named.name, named.type = f"{prefix}_{f.name}", hints[f.name]
                self._parse_dataclass_field(self, named)

    @staticmethod
    def _parse_dataclass_field(parser, field: dataclasses.Field) -> None:
        metadata = dict(field.metadata)
        cli = metadata.pop("cli", {})
        if cli is False:
            return
        inner, optional = _optional_inner(field.type)
        if dataclasses.is_dataclass(inner):
            return  # a nested config keeps its default
        if "choices" in cli:
            metadata["choices"] = tuple(cli["choices"])
        aliases = list(cli.get("aliases", ()))
        metadata.setdefault("help", "(default: %(default)s)")  # --help shows every default
        names = [f"--{field.name}"] + ([f"--{field.name.replace('_', '-')}"] if "_" in field.name else [])
        default = field.default
        if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        read = _reader(field.name, inner, optional)
        if cli.get("negative") and inner is bool:
            # --x [BOOL] and a named opposite (--no-gate) instead of HfArgumentParser's --no_x
            parser.add_argument(*names, *aliases, type=string_to_bool, nargs="?", const=True, default=default,
                                metavar="BOOL", **metadata)
            parser.add_argument(cli["negative"], action="store_false", dest=field.name,
                                help=cli.get("negative_help", f"the same as --{field.name.replace('_', '-')} false"))
        elif read is not None:
            required = default is dataclasses.MISSING
            parser.add_argument(*names, *aliases, type=read, required=required, default=None if required else default,
                                metavar=field.name.upper(), **metadata)
        else:
            plain = dataclasses.field(default=field.default, default_factory=field.default_factory,
                                      metadata={**metadata, "aliases": aliases})
            plain.name, plain.type = field.name, field.type
            HfArgumentParser._parse_dataclass_field(parser, plain)


def config_from_args(args: argparse.Namespace, cls: type, *, prefix: str = "", **overrides: Any) -> Any:
    """Build ``cls`` from the parsed flags its fields made (nested configs keep their defaults)."""
    key = f"{prefix}_" if prefix else ""
    values = {f.name: getattr(args, key + f.name) for f in dataclasses.fields(cls)
              if f.init and hasattr(args, key + f.name)}
    values.update(overrides)
    return cls(**values)
