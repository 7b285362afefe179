"""`python -m atb --help` without composing the config.

Hydra's own help composes every group option (about a second here); this lists the same
groups from the config directory in a few milliseconds. `--hydra-help` stays Hydra's.
"""

from __future__ import annotations

from pathlib import Path

USAGE = """\
atb: an observability-first crypto trading bot runtime (Hydra-configured)

Usage: python -m atb [--cfg job|hydra|all] [--resolve] [-m] [--info] [--hydra-help]
                     [key=value ...] [group=option ...]

Examples:
  python -m atb                                    backtest ml_basic on bundled BTCUSDT 1h
  python -m atb strategy=sma_crossover strategy.fast=5 data.start=2024-06-01
  python -m atb mode=paper exchange=replay         offline "live" loop over bundled data
  python -m atb -m strategy=sma_crossover strategy.fast=5,10,20   sweep
  python -m atb --cfg job                          print exactly what would run

== Configuration groups ==  (group=option; the first is the default)
"""


def group_options(conf_dir: Path) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for group in sorted(p for p in conf_dir.iterdir() if p.is_dir()):
        # `_base.yaml` and the like are what options inherit (`defaults: [_base]`), not options
        options = sorted(f.stem for f in group.glob("*.yaml") if not f.stem.startswith("_"))
        if options:
            groups[group.name] = options
    return groups


def defaults(conf_dir: Path) -> dict[str, str]:
    """Read the primary config's defaults list with a line scan: no YAML parser needed."""
    chosen: dict[str, str] = {}
    in_defaults = False
    for line in (conf_dir / "config.yaml").read_text(encoding="utf-8").splitlines():
        if line.startswith("defaults:"):
            in_defaults = True
            continue
        if in_defaults:
            if not line.startswith((" ", "-")) and line.strip():
                break
            item = line.strip().lstrip("- ").strip()
            if ":" in item and not item.startswith("override"):
                key, _, value = item.partition(":")
                chosen[key.strip()] = value.strip().strip("\"'")
    return chosen


def render_help(conf_dir: Path) -> str:
    chosen = defaults(conf_dir)
    lines = [USAGE]
    for group, options in group_options(conf_dir).items():
        default = chosen.get(group)
        ordered = ([default] if default in options else []) + [o for o in options if o != default]
        lines.append(f"  {group}: {', '.join(ordered)}")
    lines.append("\nEvery value can be overridden as key=value; see README.md for the reference.")
    return "\n".join(lines)
