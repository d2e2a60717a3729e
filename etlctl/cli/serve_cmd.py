"""`etlctl serve`: the REST API, the web admin and /metrics over the same store."""

from __future__ import annotations

import typer

from etlctl.cli.options import no_crontab_option
from etlctl.cli.output import app_state, note


def serve(
    ctx: typer.Context,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (loopback unless --allow-remote)."
    ),
    port: int = typer.Option(8765, "--port", "-p", min=1, max=65535, help="Port to listen on."),
    allow_remote: bool = typer.Option(
        False,
        "--allow-remote",
        help="Allow a --host that other machines can reach (put TLS in front of it).",
    ),
    show_token: bool = typer.Option(
        False, "--show-token", help="Print the API token (made if there is none) and exit."
    ),
    rotate_token: bool = typer.Option(
        False, "--rotate-token", help="Make a new token (ends every session) and exit."
    ),
    secure_cookies: bool = typer.Option(
        False, "--secure-cookies", help="Send the session cookie over HTTPS only (behind TLS)."
    ),
    no_crontab: bool = no_crontab_option(),
) -> None:
    """Serve the REST API (/api/v1), the web admin (/) and Prometheus metrics (/metrics).

    Every request needs the token kept beside the store (made at the first start, mode
    0600): API clients send `Authorization: Bearer TOKEN`, the web pages ask for it once.
    Syncs started from the web run as `etlctl sync` in their own process.

    Examples:

      etlctl serve

      etlctl serve --port 9000

      curl -H "Authorization: Bearer $(etlctl serve --show-token)" http://127.0.0.1:8765/api/v1/connections

      etlctl serve --host 0.0.0.0 --allow-remote --secure-cookies
    """
    # Imported here: FastAPI and uvicorn cost start-up time no other command should pay.
    from etlctl.web import auth, server

    store = app_state(ctx).store
    if rotate_token:
        auth.rotate_token(store)
        note(f"new token written to {auth.token_path(store)}")
        return
    token = auth.load_or_create_token(store)
    if show_token:
        typer.echo(token)
        return
    server.check_host(host, allow_remote)
    if not server.is_loopback(host):
        note(f"warning: listening on {host}: other machines can reach this server (--allow-remote)")
    shown = f"[{host}]" if ":" in host else host
    note(
        f"etlctl serve on http://{shown}:{port}/ (API /api/v1, OpenAPI /api/openapi.json, "
        f"metrics /metrics); token in {auth.token_path(store)} (etlctl serve --show-token)"
    )
    server.serve(store, token, host, port, no_crontab=no_crontab, secure_cookies=secure_cookies)
