"""The one way a params.yaml section becomes a config object: ``from_mapping(cls, mapping, prefix=...)``.

Every section is a frozen dataclass; its field annotations are the schema. ``from_mapping`` rejects
unknown keys at every nesting level (with a did-you-mean), checks and coerces each value strictly from
its annotation (a bool is not a number, 2.5 is not an integer; an integer is a valid float; strings
that spell a number are numbers, since YAML 1.1 reads ``1e-4`` as a string), builds nested dataclass
sections recursively, and raises :class:`ParamsError`, whose message is one line naming the full
dotted key: ``scvit.omega: expected a number, got 'abc'``. The stage scripts and the ``selfme``
command turn it into that line on stderr and exit code 2 (``stages._params.guarded``, ``selfme.cli``).
A field with a fixed set of string values is annotated ``Literal[...]`` (``Literal[CONSTANT]`` spreads a
module's tuple of names); a :class:`Section` checks its Literal fields on construction too, so a config
built in code is held to the same values, with the same did-you-mean message.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import Any, Literal, Mapping, TypeVar, Union

T = TypeVar("T")

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class ParamsError(ValueError):
    """A bad params value or key; the message is one line that starts with the full dotted key."""


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(mapping: Mapping[str, Any], known: typing.Iterable[str], *, prefix: str) -> None:
    """Unknown keys of ``mapping`` are a :class:`ParamsError` naming the first one."""
    known = list(known)
    for key in mapping:
        if key not in known:
            raise ParamsError(f"{_join(prefix, key)}: unknown key{did_you_mean(key, known)}")


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _describe(tp: Any) -> str:
    """A human name for an annotation (the ``expected ...`` part of a message)."""
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        return "a list"
    if origin is dict or (dataclasses.is_dataclass(tp)):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _fail(tp: Any, value: Any, key: str) -> typing.NoReturn:
    raise ParamsError(f"{key}: expected {_describe(tp)}, got {value!r}")


def _scalar(value: Any, tp: type, key: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INT.fullmatch(value.strip()):
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(value, tp):
        return value
    _fail(tp, value, key)


def _sequence(value: Any, tp: Any, key: str) -> Any:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        _fail(tp, value, key)
    args = typing.get_args(tp)
    if typing.get_origin(tp) is list:
        return [coerce(v, args[0] if args else Any, f"{key}[{i}]") for i, v in enumerate(value)]
    if not args or (len(args) == 2 and args[1] is Ellipsis):
        item = args[0] if args else Any
        return tuple(coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise ParamsError(f"{key}: expected a list of {len(args)} values, got {list(value)!r}")
    return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))


def coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against the annotation ``tp`` and converted (ints to floats, lists to tuples,
    mappings to nested dataclasses); a mismatch is a :class:`ParamsError` naming ``key``."""
    if tp is Any or tp is object:
        return value
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, prefix=key)
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if any(value == a and type(value) is type(a) for a in allowed):
            return value
        hint = did_you_mean(value, [str(a) for a in allowed]) if isinstance(value, str) else ""
        raise ParamsError(f"{key}: expected {_describe(tp)}, got {value!r}{hint}")
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        candidates = [a for a in args if a is not type(None)]
        if len(candidates) == 1 and (dataclasses.is_dataclass(candidates[0]) or typing.get_origin(candidates[0])):
            return coerce(value, candidates[0], key)  # Optional[section or list]: its own message, inner key
        for arg in candidates:
            try:
                return coerce(value, arg, key)
            except ParamsError:
                continue
        _fail(tp, value, key)
    if origin in (list, tuple):
        return _sequence(value, tp, key)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            _fail(tp, value, key)
        args = typing.get_args(tp)
        item = args[1] if args else Any
        return {k: coerce(v, item, _join(key, k)) for k, v in value.items()}
    if tp is type(None):
        if value is None:
            return None
        _fail(tp, value, key)
    return _scalar(value, tp, key)


def from_mapping(cls: type[T], mapping: Mapping[str, Any] | None, *, prefix: str) -> T:
    """Build the dataclass ``cls`` from a params section: unknown keys, missing required keys and values
    of the wrong type are a :class:`ParamsError` naming ``prefix.key``; so is a ValueError, TypeError or
    KeyError raised by the class's own ``__post_init__`` checks (prefixed with ``prefix`` when its
    message does not already name a key of the section). ``None`` is the empty section."""
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise ParamsError(f"{prefix}: expected a mapping, got {mapping!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    check_keys(mapping, fields, prefix=prefix)
    required = [name for name, f in fields.items() if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING and name not in mapping]
    if required:
        raise ParamsError(f"{_join(prefix, required[0])}: missing key")
    hints = typing.get_type_hints(cls)
    values = {k: coerce(v, hints.get(k, Any), _join(prefix, k)) for k, v in mapping.items()}
    try:
        return cls(**values)
    except ParamsError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        message = " ".join((str(exc.args[0]) if exc.args else str(exc)).split())
        first = re.split(r"[ :.]", message, maxsplit=1)[0]
        if first in fields:
            message = _join(prefix, message)
        elif prefix and not message.startswith(prefix.split(".")[0]):
            message = f"{prefix}: {message}"
        raise ParamsError(message) from exc


def check_rules(rules: typing.Iterable[tuple[bool, str]]) -> None:
    """A class's own checks: raise ValueError with the message of the first rule that does not hold
    (``from_mapping`` turns it into a :class:`ParamsError`; start the message with the key)."""
    for ok, message in rules:
        if not ok:
            raise ValueError(message)


def check_literals(config: Any, *, prefix: str) -> None:
    """Every field of the dataclass ``config`` annotated ``Literal[...]`` holds one of its values; else a
    :class:`ParamsError` ``prefix.field: expected one of 'a', 'b', got 'x' (did you mean 'a'?)``."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        tp = hints.get(f.name)
        if typing.get_origin(tp) is Literal:
            coerce(getattr(config, f.name), tp, _join(prefix, f.name))


class Section:
    """Mixin of a params section's dataclass: ``Cls.from_mapping(section)`` names keys after ``SECTION``;
    construction checks the Literal fields (:func:`check_literals`) before the class's own
    ``__post_init__``."""

    SECTION = ""

    def __post_init__(self) -> None:
        check_literals(self, prefix=self.SECTION)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__post_init__")
        if own is not None and not getattr(own, "_checks_literals", False):
            def __post_init__(self: Any) -> None:
                check_literals(self, prefix=self.SECTION)
                own(self)

            __post_init__._checks_literals = True  # type: ignore[attr-defined]
            __post_init__.__doc__ = own.__doc__
            cls.__post_init__ = __post_init__  # type: ignore[method-assign]

    @classmethod
    def from_mapping(cls: type[T], mapping: Mapping[str, Any] | None, *, prefix: str | None = None) -> T:
        return from_mapping(cls, mapping, prefix=cls.SECTION if prefix is None else prefix)


def set_threads(threads: int) -> int:
    """Fix torch's intra-op thread count for a stage (its ``threads`` parameter: results depend on it;
    0 keeps torch's default, one per core) and return the count in force."""
    import torch

    if threads > 0:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def pin_blas_threads(threads: int = 1) -> None:
    """Fix the BLAS pools of numpy and OpenCV (their own OpenBLAS builds) at ``threads`` for this process
    and the data-loader workers it forks. Left alone, OpenBLAS takes its count from OMP_NUM_THREADS /
    OPENBLAS_NUM_THREADS or the core count, and a threaded product splits its rows differently, so the
    environment, not params.yaml, would change the float results (the crops moved with OMP_NUM_THREADS
    on an AMD EPYC machine, and every stage after them). Every stage and ``selfme`` command calls this
    first; the stages' numpy products are small, so one thread costs nothing."""
    import cv2  # noqa: F401  (loads OpenCV's OpenBLAS, so that it is limited too)
    import numpy  # noqa: F401
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=int(threads), user_api="blas")


def as_dict(config: Any) -> dict[str, Any]:
    """A config (nested dataclasses) as plain dicts and lists, the form params.yaml holds."""
    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))
