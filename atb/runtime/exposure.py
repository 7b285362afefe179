"""Where a server listens and whether it may listen there without credentials.

Every atb server (health, dashboards, the `dashboards` node) resolves its address here, so
one rule holds everywhere: a workstation binds 127.0.0.1; a platform (`ENV=production`,
Railway, Kubernetes) binds all interfaces, because its router/probes reach the container
from outside; `HOST` in the environment or an explicit config value overrides both. A server
reachable beyond loopback must carry credentials (API token, dashboard login) or be told
`allow_unauthenticated=true` explicitly.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence

AUTO = "auto"
LOOPBACK = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"


class ExposureError(ValueError):
    """A server would listen beyond loopback without authentication."""


def platform_marker(environ: Mapping[str, str] | None = None) -> str | None:
    """The env var showing a hosting platform runs this process, or None on a workstation."""
    env = os.environ if environ is None else environ
    if env.get("ENV", "").strip().lower() == "production":
        return "ENV=production"
    railway = sorted(k for k in env if k.startswith("RAILWAY_") and env[k])
    if railway:
        return railway[0]
    if env.get("KUBERNETES_SERVICE_HOST"):
        return "KUBERNETES_SERVICE_HOST"
    return None


def resolve_host(configured: str, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(host, where it came from): an explicit config value, else HOST, else the platform."""
    env = os.environ if environ is None else environ
    if configured.strip().lower() != AUTO:
        return configured, "config"
    host = env.get("HOST", "").strip()
    if host:
        return host, "env:HOST"
    marker = platform_marker(env)
    if marker is not None:
        return ALL_INTERFACES, f"platform:{marker}"
    return LOOPBACK, "default (workstation)"


def resolve_port(
    configured: int,
    names: Sequence[str],
    config_key: str,
    environ: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """(port, where it came from): the first of the env vars `names` that is set, else config."""
    env = os.environ if environ is None else environ
    for name in names:
        raw = env.get(name, "").strip()
        if raw:
            try:
                port = int(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a port number") from None
            if not 0 <= port <= 65535:
                raise ValueError(f"{name}={port} is not a port number (0-65535)")
            return port, f"env:{name}"
    return configured, f"config:{config_key}"


def is_loopback(host: str) -> bool:
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a hostname other than localhost may resolve anywhere


def check_exposure(
    server: str,
    host: str,
    authenticated: bool,
    allow_unauthenticated: bool,
    how: str,
    override: str,
) -> None:
    """Refuse (ExposureError, one line) an unauthenticated server beyond loopback."""
    if authenticated or allow_unauthenticated or is_loopback(host):
        return
    raise ExposureError(
        f"{server}: refusing to listen on {host} without authentication: {how}, "
        f"or {override} to serve it unauthenticated"
    )


def display_host(host: str) -> str:
    """A host a browser on this machine can open (0.0.0.0 is not an address to visit)."""
    return LOOPBACK if host in ("", ALL_INTERFACES, "::") else host
