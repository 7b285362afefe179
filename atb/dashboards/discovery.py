"""Find the dashboards: every `panels/*.py` that declares a `DASHBOARD` mapping.

Metadata is read from the file's source (a literal `DASHBOARD = {...}`), so listing never
depends on a dashboard importing cleanly; `check=True` then imports each one and records
why it failed, so a broken dashboard is listed as broken instead of silently vanishing.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from atb.dashboards import OPTIONS

PANELS_ENV = "ATB_PANELS_DIR"
MODULE_PREFIX = "atb_panels"


def panels_dir() -> Path:
    """`$ATB_PANELS_DIR`, else the shipped `panels/` (the repository's, or the wheel's)."""
    from atb import resources

    configured = os.environ.get(PANELS_ENV)
    if configured:
        return Path(configured).expanduser()
    return resources.panels_dir()


@dataclass(frozen=True)
class DashboardInfo:
    name: str
    description: str
    options: frozenset[str]
    path: Path
    error: str | None = None
    details: str | None = field(default=None, compare=False)

    @property
    def broken(self) -> bool:
        return self.error is not None

    def supports(self, option: str) -> bool:
        return option in self.options


class DashboardNotFound(LookupError):
    pass


class DashboardBroken(RuntimeError):
    pass


def read_metadata(path: Path) -> DashboardInfo | None:
    """The dashboard declared in `path`; None when the file declares none (a helper)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, ValueError) as exc:
        return DashboardInfo(path.stem, "", frozenset(), path, f"{type(exc).__name__}: {exc}")
    node = _find_assignment(tree, "DASHBOARD")
    if node is None:
        return None
    try:
        meta = ast.literal_eval(node)
    except ValueError:
        return DashboardInfo(
            path.stem, "", frozenset(), path, "DASHBOARD must be a literal mapping"
        )
    return _info_from_meta(meta, path)


def _info_from_meta(meta: Any, path: Path) -> DashboardInfo:
    if not isinstance(meta, dict):
        return DashboardInfo(path.stem, "", frozenset(), path, "DASHBOARD must be a mapping")
    name = str(meta.get("name") or path.stem)
    options = frozenset(str(o) for o in meta.get("options", ()))
    unknown = sorted(options - set(OPTIONS))
    error = f"unknown options {unknown} (known: {list(OPTIONS)})" if unknown else None
    return DashboardInfo(name, str(meta.get("description", "")), options, path, error)


def _find_assignment(tree: ast.Module, target: str) -> ast.expr | None:
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == target for t in stmt.targets
        ):
            return stmt.value
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and stmt.target.id == target
            and stmt.value is not None
        ):
            return stmt.value
    return None


def discover(directory: Path | None = None, check: bool = False) -> list[DashboardInfo]:
    """Every dashboard under `directory`, sorted by name; `check` imports each one."""
    root = directory or panels_dir()
    found: list[DashboardInfo] = []
    if not root.is_dir():
        return found
    for path in sorted(root.glob("*.py")):
        if path.name.startswith("_"):
            continue
        info = read_metadata(path)
        if info is None:
            continue
        if check and not info.broken:
            try:
                import_dashboard(info)
            except DashboardBroken as exc:
                notes = getattr(exc, "__notes__", None)
                info = replace(info, error=str(exc), details=notes[0] if notes else None)
        found.append(info)
    return sorted(found, key=lambda i: i.name)


def find(name: str, directory: Path | None = None) -> DashboardInfo:
    dashboards = discover(directory)
    for info in dashboards:
        if info.name == name:
            return info
    known = ", ".join(i.name for i in dashboards) or "none"
    raise DashboardNotFound(f"no dashboard named '{name}' (available: {known})")


def import_dashboard(info: DashboardInfo) -> ModuleType:
    """Import the dashboard's panel file under a private name (so it does not self-serve).

    Raises DashboardBroken with a one-line reason; the traceback is attached as a note.
    """
    if info.error is not None:
        raise DashboardBroken(info.error)
    module_name = f"{MODULE_PREFIX}.{info.path.stem}"
    cached = sys.modules.get(module_name)
    if cached is not None and getattr(cached, "__file__", None) == str(info.path):
        return cached
    spec = importlib.util.spec_from_file_location(module_name, info.path)
    if spec is None or spec.loader is None:
        raise DashboardBroken(f"cannot load {info.path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        broken = DashboardBroken(f"{type(exc).__name__}: {exc}")
        broken.add_note("".join(traceback.format_exception(exc)))
        raise broken from exc
    if not callable(getattr(module, "create_app", None)):
        raise DashboardBroken("defines no create_app(settings) function")
    sys.modules[module_name] = module
    return module


def app_factory(info: DashboardInfo) -> Callable[..., Any]:
    from atb.dashboards.guard import guarded_page

    factory: Callable[..., Any] = import_dashboard(info).create_app
    return guarded_page(info.name, factory)


def named_pages(names: Iterable[str], settings: Any) -> dict[str, Callable[[], Any]]:
    """{name: page builder} for one server hosting several dashboards on one settings."""
    return {name: _bound(app_factory(find(name)), settings) for name in names}


def _bound(factory: Callable[..., Any], settings: Any) -> Callable[[], Any]:
    # a zero-argument function: Panel inspects a page function's signature
    def page() -> Any:
        return factory(settings)

    return page
