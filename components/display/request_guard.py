"""Which requests the display answers (what a browser would do for an attacker's page).

- DNS rebinding: a page of attacker.example whose name is made to resolve to the kiosk's
  address sends `Host: attacker.example`. The display answers only Host headers that are an IP
  address, `localhost`, or a name listed in the `allowed_hosts` setting.
- Cross-site request forgery: a browser says where a request comes from (`Origin`,
  `Sec-Fetch-Site`). A state-changing request (an upload search) from another origin is
  refused; one without either header is not from a web page and is let through.
Framing is refused by the pages' headers (`frame-ancestors 'none'`, `X-Frame-Options`).
"""

from __future__ import annotations

import ipaddress

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def host_problem(host: str, allowed_hosts: str) -> str | None:
    """Why the `Host` header is refused, or None."""
    name = host_name(host)
    if not name or _is_ip(name) or name == "localhost":
        return None
    allowed = {h.strip().lower().rstrip(".") for h in allowed_hosts.split(",") if h.strip()}
    if name in allowed:
        return None
    return (
        f"the display does not answer to the host name {name!r} (only to IP addresses, localhost and "
        f"the names in its allowed_hosts setting)"
    )


def origin_problem(
    method: str, origin: str | None, fetch_site: str | None, scheme: str, host: str
) -> str | None:
    """Why a request is refused as cross-origin, or None. Only state-changing methods are checked."""
    if method.upper() in SAFE_METHODS:
        return None
    if fetch_site and fetch_site.lower() not in ("same-origin", "none"):
        return f"cross-origin {method} refused (Sec-Fetch-Site: {fetch_site}): use the display's own page"
    if origin is not None and origin.lower().rstrip("/") != f"{scheme}://{host}".lower():
        return f"cross-origin {method} refused (Origin: {origin}): use the display's own page"
    return None


def host_name(host: str) -> str:
    """The name or address of a Host header, without its port."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name, _, port = host.rpartition(":")
    return (name if name and port.isdigit() else host).rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
