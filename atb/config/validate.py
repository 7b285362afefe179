"""Validate the composed config once, at the boundary, before any node is built.

Top-level keys are either run settings (`mode`, `symbol`, `timeframe`, `runner`) or
run-graph nodes: a mapping with `_target_`. Each node's settings are validated by the
`config_model` its target class declares, so one typed model per domain does the work
and a user's own node brings its own model.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import Field, SecretStr, ValidationError

from atb.config.base import NodeConfig, StrictModel, format_validation_error
from atb.config.targets import import_target
from atb.runtime.errors import ConfigError

Mode = Literal["backtest", "paper", "live", "train"]


class RunnerConfig(StrictModel):
    main: str = Field("engine", description="node whose run() is the run")
    stop_timeout: float = Field(10.0, gt=0, description="seconds each node gets to stop")
    write_outputs: bool = Field(True, description="write redacted config copies to the output dir")


class SweepSettings(StrictModel):
    metric: str = Field("sharpe", min_length=1, description="metric that ranks a sweep's jobs")
    descending: bool = Field(True, description="higher is better")


class RunSettings(StrictModel):
    mode: Mode = "backtest"
    symbol: str = Field("BTCUSDT", min_length=1)
    timeframe: str = Field("1h", pattern=r"^[1-9][0-9]*[mhdwM]$")
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    sweep: SweepSettings = Field(default_factory=SweepSettings)


RUN_KEYS = frozenset(RunSettings.model_fields)


@dataclass(frozen=True)
class NodeSpec:
    name: str
    cls: type
    config: NodeConfig
    needs: tuple[str, ...]


@dataclass
class ValidatedConfig:
    settings: RunSettings
    nodes: dict[str, NodeSpec]
    disabled: frozenset[str]
    order: list[str]
    raw: dict[str, Any]
    secrets: frozenset[str] = field(default_factory=frozenset)


def to_container(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    if isinstance(cfg, dict):
        return cfg
    try:
        data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "<config>"
        msg = str(exc).splitlines()[0]
        raise ConfigError(f"{key}: {msg}") from exc
    assert isinstance(data, dict)
    return {str(k): v for k, v in data.items()}


def validate_config(cfg: DictConfig | dict[str, Any]) -> ValidatedConfig:
    """Return the validated run description or raise ConfigError listing every problem."""
    raw = to_container(cfg)
    problems: list[str] = []
    run_part = {k: v for k, v in raw.items() if k in RUN_KEYS}
    try:
        settings = RunSettings.model_validate(run_part)
    except ValidationError as exc:
        problems += format_validation_error(exc)
        settings = RunSettings()

    nodes: dict[str, NodeSpec] = {}
    disabled: set[str] = set()
    invalid: set[str] = set()  # already reported; a node needing one is not a second problem
    for name, value in raw.items():
        if name in RUN_KEYS:
            continue
        if not isinstance(value, dict) or "_target_" not in value:
            problems.append(f"{name}: unknown key (not a run setting, and not a node: no _target_)")
            continue
        if value.get("enabled", True) is False:
            disabled.add(name)
            continue
        spec = _validate_node(name, value, problems)
        if spec is not None:
            nodes[name] = spec
        else:
            invalid.add(name)

    if settings.runner.main not in nodes and not problems:
        problems.append(
            f"runner.main: node '{settings.runner.main}' is not in the run graph"
            + (" (it is disabled)" if settings.runner.main in disabled else "")
        )
    problems += _check_needs(nodes, disabled, invalid)
    order: list[str] = []
    if not problems:
        order = topological_order(run_graph(nodes), disabled)
    if problems:
        raise ConfigError(name_env_sources(problems, cfg))
    return ValidatedConfig(
        settings=settings,
        nodes=nodes,
        disabled=frozenset(disabled),
        order=order,
        raw=raw,
        secrets=frozenset(collect_secrets(s.config for s in nodes.values())),
    )


ENV_SOURCE = re.compile(r"^\$\{oc\.(?:decode:\$\{oc\.)?env:([A-Za-z_][A-Za-z0-9_]*)")


def env_sources(cfg: DictConfig | dict[str, Any]) -> dict[str, str]:
    """Dotted key -> the environment variable its value comes from (`${oc.env:VAR,...}`)."""
    if not isinstance(cfg, DictConfig):
        return {}
    found: dict[str, str] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{key}.{i}")
        elif isinstance(value, str) and (match := ENV_SOURCE.match(value)):
            found[key] = match.group(1)

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return found


def name_env_sources(problems: list[str], cfg: DictConfig | dict[str, Any]) -> list[str]:
    """A bad value that came from the environment says which variable to fix."""
    sources = env_sources(cfg)
    if not sources:
        return problems
    named = []
    for line in problems:
        var = sources.get(line.partition(": ")[0])
        named.append(f"{line} (from the environment variable {var})" if var else line)
    return named


def _validate_node(name: str, value: dict[str, Any], problems: list[str]) -> NodeSpec | None:
    target = value["_target_"]
    try:
        cls = import_target(str(target))
    except ImportError as exc:
        problems.append(f"{name}._target_: cannot import '{target}': {exc}")
        return None
    model = getattr(cls, "config_model", None)
    if not (isinstance(model, type) and issubclass(model, NodeConfig)):
        problems.append(f"{name}._target_: '{target}' does not declare a NodeConfig config_model")
        return None
    try:
        config = model.model_validate(value)
    except ValidationError as exc:
        problems += format_validation_error(exc, prefix=name)
        return None
    return NodeSpec(name=name, cls=cls, config=config, needs=tuple(config.needs))


def _check_needs(
    nodes: dict[str, NodeSpec], disabled: set[str], invalid: AbstractSet[str] = frozenset()
) -> list[str]:
    problems: list[str] = []
    for name, spec in nodes.items():
        for need in spec.needs:
            if need == name:
                problems.append(f"{name}.needs: a node cannot need itself")
            elif need not in nodes and need not in disabled and need not in invalid:
                problems.append(f"{name}.needs: unknown node '{need}'")
        params = inspect.signature(spec.cls).parameters
        for pname, param in params.items():
            if pname in {"config", "ctx"} or param.kind in (
                inspect.Parameter.VAR_KEYWORD,
                inspect.Parameter.VAR_POSITIONAL,
            ):
                continue
            required = param.default is inspect.Parameter.empty
            if pname not in spec.needs and required:
                problems.append(
                    f"{name}.needs: must include '{pname}' ({spec.cls.__name__} needs it)"
                )
            elif pname in spec.needs and required and pname in disabled and pname not in invalid:
                problems.append(f"{name}.needs: '{pname}' is required but disabled")
        accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        for need in spec.needs:
            if need not in params and not accepts_any:
                problems.append(f"{name}.needs: {spec.cls.__name__} does not take '{need}'")
    return problems


def run_graph(nodes: dict[str, NodeSpec]) -> dict[str, tuple[str, ...]]:
    """Each node's inputs: its `needs`, plus every infrastructure node (redaction, logging)
    for the others, so those are built first and stopped last without anyone listing them."""
    first = tuple(n for n, s in nodes.items() if getattr(s.cls, "infrastructure", False))
    return {
        name: spec.needs
        if name in first
        else (*spec.needs, *(f for f in first if f not in spec.needs))
        for name, spec in nodes.items()
    }


def topological_order(
    graph: dict[str, tuple[str, ...]], disabled: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """Dependency order, ties broken by config order so runs are reproducible."""
    pending = {n: [d for d in deps if d not in disabled] for n, deps in graph.items()}
    order: list[str] = []
    while pending:
        ready = [n for n, deps in pending.items() if all(d in order for d in deps)]
        if not ready:
            cycle = find_cycle(pending)
            raise ConfigError(f"run graph: dependency cycle {' -> '.join(cycle)}")
        order.append(ready[0])
        del pending[ready[0]]
    return order


def find_cycle(graph: dict[str, list[str]]) -> list[str]:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return [*visiting[visiting.index(node) :], node]
        if node in done or node not in graph:
            return None
        visiting.append(node)
        for dep in graph[node]:
            found = visit(dep)
            if found:
                return found
        visiting.pop()
        done.add(node)
        return None

    for start in graph:
        found = visit(start)
        if found:
            return found
    return sorted(graph)


def collect_secrets(models: Any) -> set[str]:
    """Every SecretStr value and every password embedded in a URL, for the redactor."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            secret = value.get_secret_value()
            if secret:
                found.add(secret)
        elif isinstance(value, StrictModel):
            for item in value.__dict__.values():
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, str) and "://" in value:
            password = url_password(value)
            if password:
                found.add(password)

    for model in models:
        walk(model)
    return found


def url_password(url: str) -> str | None:
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return unquote(parts.password) if parts.password else None
