"""The dashboards' login form, as a browser posts it."""

from __future__ import annotations

import http.client
import urllib.parse


def dashboard_login(port: int, user: str, password: str) -> str | None:
    """POST the login form; the session cookie on success, None when refused."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        form = urllib.parse.urlencode({"username": user, "password": password})
        conn.request(
            "POST", "/login", body=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        resp = conn.getresponse()
        resp.read()
        cookies = [v.split(";")[0] for k, v in resp.getheaders() if k.lower() == "set-cookie"]
        if "error=" in (resp.getheader("Location") or "") or not cookies:
            return None
        return "; ".join(cookies)
    finally:
        conn.close()
