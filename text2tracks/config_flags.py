"""Command-line flags <-> config dataclasses, one way, in one place; and the flag spellings.

Every ``text2tracks`` subcommand spells one concept one way:

=====================  ============================  =========================================
concept                canonical flag                old spellings (hidden, still accepted)
=====================  ============================  =========================================
playlists read         ``--playlists PATH``          ``--train`` (``evaluate``)
test playlists         ``--test-playlists PATH``     ``--test`` (``evaluate``)
artifact folder        ``--artifact DIR``            ``--out`` (``build-ids``)
run / results folder   ``--out DIR``                 (``evaluate``, ``demo``: results, plots
                                                     and the artifacts they train)
time budget, minutes   ``--max-minutes M``           ``--minutes``, ``--budget-minutes``
beam width             ``--num-beams N``             ``--beams``
progress bars          ``--progress/--no-progress``  ``--quiet`` (= ``--no-progress``)
=====================  ============================  =========================================

The last three are tied to their canonical flags: wherever ``--max-minutes``, ``--num-beams``
or ``--progress`` is added, through :func:`add_config_flags` or :func:`add_flag`, its old
spellings come with it (:data:`HIDDEN_ALIASES`), whatever the ``dest``. The first three are per command, because
``--out`` still names a run folder in ``evaluate`` and ``demo``, and ``export --out`` has always
abbreviated ``--output``.

Mapping a config dataclass to flags (:func:`add_config_flags`) and back
(:func:`config_from_args`) follows one rule set, read from the dataclass itself:

- one flag per field, ``--field-name``; a nested dataclass field (``TrainConfig.model``) adds
  its own fields' flags, flat. Fields of the same name in a config and a nested one share one
  flag (``build-ids --seed`` seeds both CF and k-means), so the namespace holds each name once;
- the type comes from the annotation: ``int``, ``float``, ``str``, ``X | None`` (as ``X``),
  ``bool`` (``--x/--no-x``), ``tuple[str, ...]`` (comma-separated), ``Literal[...]`` (choices);
- choices from ``Literal``, from the field's ``metadata["choices"]`` or from the caller;
- help from ``metadata["help"]`` or else the class docstring's ``Attributes:`` entry, plus the
  default; ``metadata["flag"]`` renames the flag, ``metadata["argparse"]`` adds argparse
  settings (``TrainConfig.resume``: ``nargs="?"``, ``const="latest"``);
- a field without a default is a required flag.

Written here rather than with ``transformers.HfArgumentParser``: that one does not flatten nested
dataclasses, has no ``tuple`` fields, spells booleans ``--x true`` without ``--no-x`` for
``False`` defaults (so ``--lora`` / ``--no-lora`` would change), and importing transformers would
make ``text2tracks --help`` take seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# canonical flag -> its old spellings, accepted (hidden) wherever the flag is added
HIDDEN_ALIASES: dict[str, tuple[str, ...]] = {
    "--max-minutes": ("--minutes", "--budget-minutes"),
    "--num-beams": ("--beams",),
}
# --quiet is the old spelling of --no-progress (a store_false alias of the "progress" field)
QUIET_ALIAS = "--quiet"


def flag_name(name: str) -> str:
    """``max_minutes`` -> ``--max-minutes``."""
    return "--" + name.replace("_", "-")


def command_parser(
    subparsers, name: str | None, *, prog: str, help: str, description: str, epilog: str
) -> argparse.ArgumentParser:
    """A subcommand's parser (``subparsers`` given) or a standalone one (``python -m``), both
    with the examples in ``epilog`` kept as written."""
    kwargs = dict(
        description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if subparsers is None:
        return argparse.ArgumentParser(prog=prog, **kwargs)
    return subparsers.add_parser(name, help=help, **kwargs)


def add_flag(
    parser, flag: str, *, aliases: Sequence[str] = (), required: bool = False, **kwargs
) -> argparse.Action:
    """``parser.add_argument(flag, **kwargs)`` plus hidden old spellings with the same ``dest``.

    The aliases are separate actions with ``help=argparse.SUPPRESS``; a required flag with
    aliases becomes a required mutually exclusive group, so that either spelling satisfies it
    and giving both is an error.
    """
    dest = kwargs.pop("dest", flag.lstrip("-").replace("-", "_"))
    aliases = tuple(aliases) + HIDDEN_ALIASES.get(flag, ())
    if kwargs.get("metavar") is None and kwargs.get("action") in (None, "store"):
        kwargs["metavar"] = flag.lstrip("-").replace("-", "_").upper()
    target = parser
    if aliases and required:
        target = parser.add_mutually_exclusive_group(required=True)
    elif required:
        kwargs["required"] = True
    action = target.add_argument(flag, dest=dest, **kwargs)
    hidden = {k: v for k, v in kwargs.items() if k not in ("help", "default", "required")}
    if isinstance(action, argparse.BooleanOptionalAction):
        hidden = {"action": "store_false"}
        aliases = (QUIET_ALIAS,) if flag == "--progress" else ()
    for alias in aliases:
        target.add_argument(
            alias, dest=dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **hidden
        )
    return action


def add_progress_flag(parser, default: bool = True) -> argparse.Action:
    """``--progress/--no-progress`` (and the hidden ``--quiet``), ``dest="progress"``."""
    return add_flag(
        parser,
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=default,
        help="show progress bars (--no-progress: none)",
    )


# ------------------------------------------------------------------------------ dataclasses


@dataclasses.dataclass(frozen=True)
class _FieldFlag:
    """One field of a (possibly nested) config class, as a flag."""

    name: str
    annotation: Any
    default: Any
    metadata: Mapping[str, Any]
    help: str


def _docstring_help(cls) -> dict[str, str]:
    """``{field name: text}`` from the ``Attributes:`` section of ``cls``'s docstring; an entry
    may name several fields (``lr, weight_decay: AdamW settings``) and run over several lines."""
    doc = cls.__doc__ or ""
    lines = doc.expandtabs().splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
    except StopIteration:
        return {}
    entries: list[list[str]] = []
    base = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if base is None:
            base = indent
        if indent < base:
            break
        if indent == base:
            entries.append([line.strip()])
        elif entries:
            entries[-1].append(line.strip())
    out: dict[str, str] = {}
    for entry in entries:
        match = re.match(r"^([a-z_][a-z0-9_]*(?:,\s*[a-z_][a-z0-9_]*)*):\s*(.*)$", " ".join(entry))
        if match:
            # reST markup reads badly in a terminal: ``x`` -> x, :class:`X` -> X
            text = re.sub(r":\w+:`~?([^`]+)`", r"\1", match.group(2)).replace("``", "")
            for name in re.split(r",\s*", match.group(1)):
                out[name] = text
    return out


def _field_flags(cls) -> list[_FieldFlag | tuple[str, type]]:
    """The fields of ``cls`` in order; a nested config class field is ``(name, its class)``."""
    hints = typing.get_type_hints(cls)
    docs = _docstring_help(cls)
    out: list[_FieldFlag | tuple[str, type]] = []
    for f in dataclasses.fields(cls):
        annotation = hints[f.name]
        if dataclasses.is_dataclass(annotation):
            out.append((f.name, annotation))
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        out.append(
            _FieldFlag(
                f.name,
                annotation,
                default,
                f.metadata,
                f.metadata.get("help", docs.get(f.name, "")),
            )
        )
    return out


def _strip_optional(annotation) -> Any:
    args = typing.get_args(annotation)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _comma_tuple(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _argparse_kwargs(spec: _FieldFlag, choices: Sequence | None) -> dict[str, Any]:
    annotation = _strip_optional(spec.annotation)
    default = spec.default
    kwargs: dict[str, Any] = {}
    if typing.get_origin(annotation) is typing.Literal:
        choices = typing.get_args(annotation)
        annotation = type(choices[0])
    choices = spec.metadata.get("choices", choices)
    shown = default
    if annotation is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(annotation) is tuple:
        kwargs["type"] = _comma_tuple
        kwargs["metavar"] = "A,B"
        if isinstance(default, tuple):
            shown = ",".join(default)
    elif annotation in (int, float, str):
        kwargs["type"] = annotation
    else:
        raise TypeError(f"{spec.name}: no flag type for {annotation!r}")
    if choices is not None:
        kwargs["choices"] = tuple(choices)
        kwargs["metavar"] = "{" + ",".join(map(str, choices)) + "}"
    if default is dataclasses.MISSING:
        kwargs["required"] = True
    else:
        kwargs["default"] = default
    text = spec.help.replace("%", "%%")
    if default is not dataclasses.MISSING:
        text = f"{text} (default: {shown})" if text else f"default: {shown}"
    kwargs["help"] = text
    kwargs.update(spec.metadata.get("argparse", {}))
    return kwargs


def add_config_flags(
    parser,
    cls,
    *,
    skip: Sequence[str] = (),
    choices: Mapping[str, Sequence] | None = None,
    names: Mapping[str, str] | None = None,
    groups: bool = True,
    _seen: dict | None = None,
) -> list[str]:
    """Add one flag per field of the dataclass ``cls`` (nested ones flattened) to ``parser``.

    Args:
        skip: field names that get no flag (the caller adds its own, or they are not flags).
        choices: ``{field name: allowed values}`` for classes that do not say it themselves.
        names: ``{field name: flag}`` renames, likewise (``{"model": "--cf-model"}``).
        groups: put each class's flags under an argument group titled with its name.

    Returns the ``dest`` names added. A field sharing its name with one already added (in this
    class or an enclosing one) shares that flag; their defaults must agree.
    """
    choices = dict(choices or {})
    names = dict(names or {})
    seen: dict[str, Any] = {} if _seen is None else _seen
    target = parser.add_argument_group(f"{cls.__name__}") if groups else parser
    added: list[str] = []
    nested = []
    for spec in _field_flags(cls):
        if isinstance(spec, tuple):
            nested.append(spec)
            continue
        if spec.name in skip:
            continue
        if spec.name in seen:
            if seen[spec.name] != spec.default:
                raise ValueError(
                    f"{cls.__name__}.{spec.name}: shares its flag with a field "
                    f"whose default differs ({seen[spec.name]!r} != {spec.default!r})"
                )
            continue
        seen[spec.name] = spec.default
        flag = spec.metadata.get("flag") or names.get(spec.name) or flag_name(spec.name)
        add_flag(target, flag, dest=spec.name, **_argparse_kwargs(spec, choices.get(spec.name)))
        added.append(spec.name)
    for _, inner in nested:
        added += add_config_flags(
            parser, inner, skip=skip, choices=choices, names=names, groups=groups, _seen=seen
        )
    return added


def config_from_args(cls, args: argparse.Namespace | Mapping[str, Any], **given):
    """Build ``cls`` (nested configs included) from parsed flags; ``given`` fields win.

    A field whose flag is absent from ``args`` (skipped) keeps its default. The class's own
    validation runs; its ``ValueError`` says what was expected and what came.
    """
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    kwargs: dict[str, Any] = {}
    for spec in _field_flags(cls):
        if isinstance(spec, tuple):
            name, inner = spec
            if name not in given:
                kwargs[name] = config_from_args(inner, values)
        elif spec.name in values and spec.name not in given:
            kwargs[spec.name] = values[spec.name]
    return cls(**kwargs, **given)


def config_to_argv(
    config, skip: Sequence[str] = (), names: Mapping[str, str] | None = None
) -> list[str]:
    """The flags that :func:`config_from_args` turns back into ``config`` (the inverse map)."""
    names = dict(names or {})
    argv: list[str] = []
    seen: set[str] = set()

    def walk(obj) -> None:
        for spec in _field_flags(type(obj)):
            if isinstance(spec, tuple):
                walk(getattr(obj, spec[0]))
                continue
            if spec.name in skip or spec.name in seen:
                continue
            seen.add(spec.name)
            value = getattr(obj, spec.name)
            flag = spec.metadata.get("flag") or names.get(spec.name) or flag_name(spec.name)
            if isinstance(value, bool):
                argv.append(flag if value else "--no-" + flag[2:])
            elif value is None:
                continue
            elif isinstance(value, tuple):
                argv.extend([flag, ",".join(value)])
            else:
                argv.extend([flag, repr(value) if isinstance(value, float) else str(value)])

    walk(config)
    return argv


def build_config(prog: str, build: Callable[[], Any]):
    """``build()``; a config's ``ValueError`` is a usage error: ``PROG: error: ...``, exit 2."""
    try:
        return build()
    except ValueError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from err
