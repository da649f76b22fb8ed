"""Reading results files written by this tool or its first version: typed access to JSON
fields, with errors that name the file and the field."""

from __future__ import annotations

from typing import Any

from sentinel2_l1c.errors import InputDataError


class JsonFields:
    """Typed access to one JSON object, with errors that name the field."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise InputDataError(f"{where} is {type(data).__name__}, not an object")
        self.data, self.where = data, where

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if name not in self.data:
            if default is ...:
                raise InputDataError(f"{self.where} has no {name}")
            return default
        value = self.data[name]
        if not isinstance(value, kind) or isinstance(value, bool) and bool not in _tuple(kind):
            raise InputDataError(f"{self.where}.{name} is {value!r}, not {_kind_name(kind)}")
        return value

    def number(self, name: str, default: Any = ...) -> float:
        return float(self.get(name, (int, float), default))

    def numbers(self, name: str) -> list[float]:
        values = self.get(name, list)
        for value in values:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise InputDataError(f"{self.where}.{name} holds {value!r}, not a number")
        return [float(v) for v in values]

    def objects(self, name: str) -> dict[str, JsonFields]:
        found = self.get(name, dict, {})
        return {
            key: JsonFields(value, f"{self.where}.{name}.{key}") for key, value in found.items()
        }


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "a number", float: "a number", str: "text", list: "a list", dict: "an object"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in _tuple(kind)))
