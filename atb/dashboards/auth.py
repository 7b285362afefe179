"""Dashboard login: Panel's basic-auth login page, credentials from the environment.

`ATB_DASHBOARD_PASSWORD` turns the login on (user `ATB_DASHBOARD_USER`, default `atb`).
The session cookie is signed with `ATB_DASHBOARD_COOKIE_SECRET`, or a random secret per
process (logins then last until a restart). The password is registered with the log
redactor the moment it is read, so no output can carry it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

USER_ENV = "ATB_DASHBOARD_USER"
PASSWORD_ENV = "ATB_DASHBOARD_PASSWORD"
COOKIE_SECRET_ENV = "ATB_DASHBOARD_COOKIE_SECRET"
DEFAULT_USER = "atb"


@dataclass(frozen=True)
class DashboardAuth:
    user: str
    password: str = field(repr=False)
    cookie_secret: str = field(repr=False)

    def basic_auth(self) -> dict[str, str]:
        """Panel's `basic_auth` mapping: user -> password."""
        return {self.user: self.password}


def auth_from_env(environ: Mapping[str, str] | None = None) -> DashboardAuth | None:
    env = os.environ if environ is None else environ
    password = env.get(PASSWORD_ENV, "")
    if not password:
        return None
    cookie_secret = env.get(COOKIE_SECRET_ENV, "") or secrets.token_urlsafe(32)
    _register_secrets(password, cookie_secret)
    return DashboardAuth(
        user=env.get(USER_ENV, "").strip() or DEFAULT_USER,
        password=password,
        cookie_secret=cookie_secret,
    )


def _register_secrets(*values: str) -> None:
    from atb.logging.redaction import get_redactor

    get_redactor().add_secrets(values)


EXPOSURE_HINT = f"set {PASSWORD_ENV} (and {USER_ENV}) for the dashboard login"
