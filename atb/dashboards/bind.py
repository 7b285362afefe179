"""The dashboards' listen address and port.

Host: an explicit value, else `HOST`, else all interfaces on a platform, else 127.0.0.1
(`atb.runtime.exposure`). Port: a standalone `atb dashboards run` is the process's only
server, so it honours the platform's `PORT` (then `ATB_DASHBOARD_PORT`); the `dashboards`
node runs beside the health server, which owns `PORT`, so it reads only
`ATB_DASHBOARD_PORT`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from atb.runtime.exposure import resolve_host, resolve_port

NODE_PORT_ENV: tuple[str, ...] = ("ATB_DASHBOARD_PORT",)
STANDALONE_PORT_ENV: tuple[str, ...] = ("PORT", "ATB_DASHBOARD_PORT")


@dataclass(frozen=True)
class Bind:
    host: str
    port: int
    host_source: str
    port_source: str

    @property
    def sources(self) -> str:
        return f"host from {self.host_source}, port from {self.port_source}"


def resolve_bind(
    host: str,
    port: int,
    port_env: tuple[str, ...],
    config_key: str,
    environ: Mapping[str, str] | None = None,
) -> Bind:
    resolved_host, host_source = resolve_host(host, environ)
    resolved_port, port_source = resolve_port(port, port_env, config_key, environ)
    return Bind(resolved_host, resolved_port, host_source, port_source)
