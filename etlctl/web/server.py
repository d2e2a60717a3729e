"""Running the app with uvicorn: where it listens, and refusing to listen widely by accident."""

from __future__ import annotations

import ipaddress
import socket

from etlctl.errors import ValidationError
from etlctl.store import Store

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def is_loopback(host: str) -> bool:
    """Whether every address the name stands for is a loopback address."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses
    )


def check_host(host: str, allow_remote: bool) -> None:
    if not is_loopback(host) and not allow_remote:
        raise ValidationError(
            f"--host {host} is not a loopback address: the API and the admin pages would be "
            "reachable from other machines",
            hint="pass --allow-remote as well (and put TLS in front: see docs/serve.md), "
            "or keep the default --host 127.0.0.1",
        )


def serve(
    store: Store,
    token: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    no_crontab: bool = False,
    secure_cookies: bool = False,
    access_log: bool = True,
) -> None:
    import uvicorn

    from etlctl.web.app import create_app

    app = create_app(store, token, no_crontab=no_crontab, secure_cookies=secure_cookies)
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=access_log,
        log_level="info",
        proxy_headers=True,
        server_header=False,
    )
