"""Typed rpc data: msgspec ``Struct`` and pydantic ``BaseModel`` classes as rpc contracts.

``ModelAdapter.for_type(Model)`` wraps one model class:

- ``load(data)`` validates decoded JSON data into a model instance, strictly (msgspec
  ``convert(strict=True)``; pydantic in strict JSON mode, so ``"1"`` is no integer while an
  RFC 3339 string still is a datetime);
- ``dump(value)`` validates a handler's return value (an instance of the model, or plain data
  shaped like it) and returns JSON-ready builtins holding the model's fields only.

Both raise ``ModelViolation`` (a ``ValueError``) whose text names the path and the rule,
``data.items[0].qty: Expected int, got str``, and never the peer's value: quoted values in the
libraries' messages are dropped, unsafe keys show as ``[?]`` (as in ``wsguard.core.schema``),
and the text is bounded. Neither library is imported here until a model of it is adapted, so
neither is required to run wsguard (``pip install 'wsguard[typed]'`` brings both).
"""

from __future__ import annotations

import re
import sys
from typing import Any, Final, cast

import orjson

from wsguard.core.schema import json_path

__all__ = ["ModelAdapter", "ModelViolation", "is_model"]

MAX_MESSAGE: Final = 160
"""The rule part of a violation is cut to this many characters."""

_MSGSPEC_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MSGSPEC_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_BACKTICKED = re.compile(r"`([^`]*)`")
_QUOTED = re.compile(r"\s*('[^']*'|\"[^\"]*\")")
# What a type name or a field name looks like in msgspec's messages (`int | null`, `str`).
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_ |\[\],.]{1,64}")
# pydantic error types whose message quotes the peer's input.
_PYDANTIC_REFLECTING: Final = frozenset({"union_tag_invalid", "json_invalid"})


class ModelViolation(ValueError):
    """Data does not fit a model; the text is safe to send to the caller."""


def is_model(tp: object) -> bool:
    """Whether ``tp`` is a msgspec ``Struct`` or pydantic ``BaseModel`` class.

    Looks only at libraries already imported: a class of either library implies its import.
    """
    if not isinstance(tp, type):
        return False
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and issubclass(tp, msgspec.Struct):
        return True
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and issubclass(tp, pydantic.BaseModel)


class ModelAdapter:
    """Load and dump one model class; build it with ``ModelAdapter.for_type``."""

    __slots__ = ("model",)

    def __init__(self, model: type) -> None:
        self.model = model

    @staticmethod
    def for_type(model: type) -> ModelAdapter:
        """The adapter for a msgspec ``Struct`` or pydantic ``BaseModel`` class.

        Raises:
            TypeError: ``model`` is neither.
        """
        msgspec = sys.modules.get("msgspec")
        if msgspec is not None and isinstance(model, type) and issubclass(model, msgspec.Struct):
            return MsgspecAdapter(model)
        pydantic = sys.modules.get("pydantic")
        if (
            pydantic is not None
            and isinstance(model, type)
            and issubclass(model, pydantic.BaseModel)
        ):
            return PydanticAdapter(model)
        raise TypeError(
            f"a typed rpc model is a msgspec.Struct or pydantic.BaseModel class, got {model!r}"
        )

    @property
    def name(self) -> str:
        return self.model.__qualname__

    def load(self, data: Any, root: str = "data") -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def dump(self, value: Any, root: str = "result") -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class MsgspecAdapter(ModelAdapter):
    __slots__ = ()

    def load(self, data: Any, root: str = "data") -> Any:
        import msgspec

        try:
            return msgspec.convert(data, self.model, strict=True)
        except msgspec.ValidationError as exc:
            raise ModelViolation(_msgspec_text(str(exc), root)) from None

    def dump(self, value: Any, root: str = "result") -> Any:
        import msgspec

        try:
            # An instance is checked too: a Struct's constructor does not enforce constraints.
            plain = msgspec.to_builtins(value)
            return msgspec.to_builtins(msgspec.convert(plain, self.model, strict=True))
        except msgspec.ValidationError as exc:
            raise ModelViolation(_msgspec_text(str(exc), root)) from None
        except TypeError:
            raise ModelViolation(f"{root}: is not {self.name} data") from None


class PydanticAdapter(ModelAdapter):
    __slots__ = ()

    def load(self, data: Any, root: str = "data") -> Any:
        return self._validate(data, root)

    def dump(self, value: Any, root: str = "result") -> Any:
        if isinstance(value, self.model):
            # model_construct() skips validation: an instance is checked like plain data.
            value = cast(Any, value).model_dump(mode="json")
        instance = self._validate(value, root)
        return instance.model_dump(mode="json")

    def _validate(self, data: Any, root: str) -> Any:
        import pydantic

        try:
            # Strict JSON mode: the rules for data that came as JSON (an ISO string is a
            # datetime, "1" is no integer), which python mode would apply differently.
            encoded = orjson.dumps(data)
        except TypeError:
            raise ModelViolation(f"{root}: is not JSON data") from None
        try:
            return self.model.model_validate_json(encoded, strict=True)  # type: ignore[attr-defined]
        except pydantic.ValidationError as exc:
            raise ModelViolation(_pydantic_text(exc, root)) from None


def _msgspec_text(message: str, root: str) -> str:
    """``Expected `int`, got `str` - at `$.items[0].qty``` → ``data.items[0].qty: Expected
    int, got str``."""
    segments: list[str | int] = []
    match = _MSGSPEC_AT.search(message)
    if match is not None:
        message = message[: match.start()]
        for name, index in _MSGSPEC_SEGMENT.findall(match["path"]):
            if name:
                segments.append(name)
            elif index == "...":
                segments.append("?")  # a dict key msgspec does not name: [?] as any unsafe key
            else:
                segments.append(int(index))
    message = _QUOTED.sub("", message)  # "Invalid enum value 'x'": the peer's value
    message = _BACKTICKED.sub(lambda m: m[1] if _SAFE_TOKEN.fullmatch(m[1]) else "?", message)
    return f"{json_path(root, segments)}: {_bounded(message)}"


def _pydantic_text(exc: Any, root: str) -> str:
    """The first error: ``data.items[0].qty: Input should be a valid integer``."""
    errors = exc.errors(include_url=False, include_context=False)
    if not errors:  # pragma: no cover - pydantic always reports one
        return f"{root}: is invalid"
    first = errors[0]
    loc = [part for part in first.get("loc", ()) if isinstance(part, (str, int))]
    message = str(first.get("msg", ""))
    value = first.get("input")
    kind = str(first.get("type", "invalid"))
    if kind in _PYDANTIC_REFLECTING or (
        isinstance(value, str) and len(value) > 2 and value in message
    ):
        message = f"is invalid ({kind})" if _SAFE_TOKEN.fullmatch(kind) else "is invalid"
    return f"{json_path(root, loc)}: {_bounded(message)}"


def _bounded(message: str) -> str:
    message = " ".join(message.split())
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."
