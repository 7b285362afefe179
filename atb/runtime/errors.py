"""Errors the runner turns into exit codes.

Exit status 2 means "the configuration is wrong, nothing was started"; 1 means a node
failed while the run was under way.
"""

from __future__ import annotations


class ConfigError(Exception):
    """The composed configuration cannot describe a valid run.

    Carries one line per problem, each naming the dotted key it is about, so the
    user sees every mistake at once instead of fixing them one run at a time.
    """

    exit_code = 2

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class NodeError(Exception):
    """A run-graph node failed to build, start, run or stop."""

    exit_code = 1

    def __init__(self, node: str, phase: str, cause: BaseException) -> None:
        self.node = node
        self.phase = phase
        self.cause = cause
        super().__init__(f"node '{node}' failed to {phase}: {type(cause).__name__}: {cause}")
