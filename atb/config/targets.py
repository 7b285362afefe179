"""`TargetList[Base]`: a config list whose entries each name their class with `_target_`.

Log sinks, health checks, alert rules and alert channels are all lists of this shape: every
entry is validated with the `config_model` its `_target_` class declares (a subclass of
`Base`), so a user adds an entry of their own in YAML exactly like a run-graph node. Every
problem of every entry is reported, each under its dotted key (`logging.sinks.1.level`,
`alerts.rules.2._target_`), never only the first.

`Base` may declare `shorthands` (`kind: console` for `_target_: atb.logging.sinks.ConsoleSink`)
and `entry_kind` (how errors name an entry: "a log sink").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from pydantic import BaseModel, BeforeValidator, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

B = TypeVar("B")


def import_target(path: str) -> Any:
    """The object a dotted `_target_` names; ImportError says what is missing."""
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ImportError(f"'{path}' is not a dotted path")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise ImportError(f"module '{module_name}' has no attribute '{attr}'") from exc


def _problem(loc: tuple[int | str, ...], message: str, value: Any) -> InitErrorDetails:
    return {
        "type": PydanticCustomError("value_error", "Value error, {msg}", {"msg": message}),
        "loc": loc,
        "input": value,
    }


def _nested(index: int, err: Any) -> InitErrorDetails:
    detail: InitErrorDetails = {
        "type": err["type"],
        "loc": (index, *err["loc"]),
        "input": err.get("input"),
    }
    if err.get("ctx"):
        detail["ctx"] = err["ctx"]
    return detail


def validate_targets(entries: Any, base: type[BaseModel]) -> Any:
    """Each entry validated by its `_target_`'s model; a ValidationError lists every problem."""
    if not isinstance(entries, list):
        return entries  # pydantic's own list check reports it
    what = getattr(base, "entry_kind", f"a {base.__name__}")
    shorthands: dict[str, str] = getattr(base, "shorthands", {})
    problems: list[InitErrorDetails] = []
    built: list[Any] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, base) or not isinstance(entry, dict):
            built.append(entry)  # a built model, or pydantic reports the wrong type
            continue
        entry = dict(entry)
        kind = entry.pop("kind", None) if shorthands else None
        if kind is not None:
            if kind not in shorthands:
                problems.append(
                    _problem((i, "kind"), f"must be one of {', '.join(shorthands)}", kind)
                )
                continue
            entry.setdefault("_target_", shorthands[kind])
        target = entry.get("_target_")
        if not isinstance(target, str) or not target:
            hint = f" (or kind: {'|'.join(shorthands)})" if shorthands else ""
            problems.append(_problem((i, "_target_"), f"required{hint}", target))
            continue
        try:
            cls = import_target(target)
        except (ImportError, ValueError) as exc:
            problems.append(_problem((i, "_target_"), f"cannot import '{target}': {exc}", target))
            continue
        model = getattr(cls, "config_model", None)
        if not (isinstance(model, type) and issubclass(model, base)):
            problems.append(
                _problem(
                    (i, "_target_"),
                    f"'{target}' is not {what} (no {base.__name__} config_model)",
                    target,
                )
            )
            continue
        try:
            built.append(model.model_validate(entry))
        except ValidationError as exc:
            problems += [_nested(i, err) for err in exc.errors(include_url=False)]
    if problems:
        raise ValidationError.from_exception_data(base.__name__, problems)
    return built


if TYPE_CHECKING:
    TargetList: TypeAlias = list[B]
else:
    from typing import Annotated

    class TargetList:
        """`TargetList[SinkConfig]`: see the module docstring."""

        def __class_getitem__(cls, base: type) -> Any:
            check: Callable[[Any], Any] = partial(validate_targets, base=base)
            return Annotated[list[base], BeforeValidator(check)]
