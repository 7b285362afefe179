"""The runner's ordering, failure and shutdown paths, with real (small) nodes."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import sample_nodes
from sample_nodes import JOURNAL

from atb.config.validate import validate_config
from atb.runtime.context import RunContext
from atb.runtime.errors import ConfigError, NodeError
from atb.runtime.runner import Runner

T = "sample_nodes.Labelled"


def node(label: str, needs: list[str] | None = None, target: str = T, **kw: Any) -> dict[str, Any]:
    return {"_target_": target, "label": label, "needs": needs or [], **kw}


def graph(main: str = "c", **nodes: dict[str, Any]) -> dict[str, Any]:
    return {"mode": "backtest", "runner": {"main": main, "stop_timeout": 0.5}, **nodes}


@pytest.fixture(autouse=True)
def _clear() -> None:
    JOURNAL.clear()


def run(cfg: dict[str, Any]) -> tuple[Any, Runner]:
    validated = validate_config(cfg)
    runner = Runner(validated, RunContext())
    return runner.run(), runner


def test_builds_in_dependency_order_and_stops_in_reverse() -> None:
    cfg = graph(c=node("c", ["b"]), b=node("b", ["a"]), a=node("a"))
    result, _ = run(cfg)
    assert result == "done"
    assert JOURNAL == [
        "build:a", "build:b", "build:c",
        "start:a", "start:b", "start:c",
        "run:c",
        "stop:c", "stop:b", "stop:a",
    ]  # fmt: skip


def test_ties_keep_config_order() -> None:
    cfg = graph(main="z", z=node("z"), y=node("y"), x=node("x"))
    assert validate_config(cfg).order == ["z", "y", "x"]


def test_dependencies_are_passed_by_name() -> None:
    cfg = graph(main="n", a=node("a"), n=node("n", ["a"], target="sample_nodes.NeedsA"))
    _, runner = run(cfg)
    assert runner.nodes["n"].needs["a"] is runner.nodes["a"]


def test_failing_start_stops_started_nodes_and_names_the_node() -> None:
    cfg = graph(c=node("c", ["b"]), b=node("b", ["a"], fail_on="start"), a=node("a"))
    with pytest.raises(NodeError, match="node 'b' failed to start: RuntimeError: start failed"):
        run(cfg)
    assert JOURNAL[-2:] == ["start:b", "stop:a"]
    assert "run:c" not in JOURNAL


def test_failing_run_still_stops_everything() -> None:
    cfg = graph(c=node("c", ["a"], fail_on="run"), a=node("a"))
    with pytest.raises(NodeError, match="node 'c' failed to run"):
        run(cfg)
    assert JOURNAL[-2:] == ["stop:c", "stop:a"]


def test_failing_build_stops_nothing_unstarted() -> None:
    cfg = graph(c=node("c", ["a"], fail_on="build"), a=node("a"))
    with pytest.raises(NodeError, match="node 'c' failed to build"):
        run(cfg)
    assert JOURNAL == ["build:a", "build:c"]


def test_a_failing_or_hanging_stop_does_not_block_the_others() -> None:
    cfg = graph(
        c=node("c", ["b"]), b=node("b", ["a"], fail_on="stop"), a=node("a", hang_on_stop=True)
    )
    validated = validate_config(cfg)
    runner = Runner(validated, RunContext())
    t0 = time.monotonic()
    runner.run()
    assert time.monotonic() - t0 < 5
    assert "stop:c" in JOURNAL


def test_sigterm_asks_the_main_node_to_finish_then_stops_in_reverse() -> None:
    cfg = graph(c=node("c", ["a"], sleep=30), a=node("a"))
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
    t0 = time.monotonic()
    result, _ = run(cfg)
    assert result == "done"
    assert time.monotonic() - t0 < 5
    assert JOURNAL[-2:] == ["stop:c", "stop:a"]


def test_cycle_is_a_config_error_naming_the_nodes() -> None:
    cfg = graph(c=node("c", ["b"]), b=node("b", ["a"]), a=node("a", ["c"]))
    with pytest.raises(ConfigError, match=r"dependency cycle [abc] -> [abc] -> [abc] -> [abc]"):
        validate_config(cfg)


def test_every_problem_is_reported_at_once() -> None:
    cfg = graph(
        c=node("c", ["nope"]),
        d=node("d", low=5, high=1),
        a=node("a", target="sample_nodes.Missing"),
        b={**node("b"), "colour": "red"},
        stray=3,
    )
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    problems = err.value.problems
    assert "c.needs: unknown node 'nope'" in problems
    assert "d.low: must be < high" in problems
    assert "b.colour: unknown key" in problems
    assert any(p.startswith("a._target_: cannot import 'sample_nodes.Missing'") for p in problems)
    assert any(p.startswith("stray: unknown key") for p in problems)


def test_required_dependency_missing_from_needs() -> None:
    cfg = graph(main="n", a=node("a"), n=node("n", [], target="sample_nodes.NeedsA"))
    with pytest.raises(ConfigError, match=r"n\.needs: must include 'a'"):
        validate_config(cfg)


def test_disabled_node_is_left_out() -> None:
    cfg = graph(c=node("c", ["a"]), a={**node("a"), "enabled": False})
    validated = validate_config(cfg)
    assert validated.order == ["c"]
    assert "a" in validated.disabled


def test_wrong_type_names_the_dotted_key() -> None:
    cfg = graph(c=node("c", sleep="soon"))
    with pytest.raises(ConfigError, match=r"c.sleep: Input should be a valid number"):
        validate_config(cfg)


def test_main_node_must_exist() -> None:
    with pytest.raises(ConfigError, match=r"runner\.main: node 'c' is not in the run graph"):
        validate_config(graph(a=node("a")))


def test_runner_overhead_is_small() -> None:
    """Not a timing assertion (see benchmarks); checks the runner records its phases."""
    _, runner = run(graph(c=node("c", ["a"]), a=node("a")))
    assert {"a.build", "c.start", "c.run"} <= set(runner.timings)


def test_sample_module_is_importable() -> None:
    assert sample_nodes.Labelled.config_model is sample_nodes.LabelledConfig
