"""The server's bearer token, and the checks every API call and page goes through.

The token is made at the first start and kept beside the store in ``serve.token`` (mode
0600, like the store): whoever can read the store can read it, nobody else. API clients send
it as ``Authorization: Bearer TOKEN``; the web pages exchange it once for a signed session
cookie (SameSite=Strict), and every form they post carries a CSRF token from that session.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from etlctl.errors import ValidationError
from etlctl.paths import home_for
from etlctl.store import Store

TOKEN_FILE = "serve.token"
TOKEN_BYTES = 32
SESSION_COOKIE = "etlctl_session"
SESSION_MAX_AGE_SECONDS = 12 * 3600


def token_path(store: Store) -> Path:
    return home_for(store.path) / TOKEN_FILE


def load_or_create_token(store: Store) -> str:
    """The token beside the store; made (0600, never overwritten) when there is none."""
    path = token_path(store)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_token(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(TOKEN_BYTES) + "\n")
    return _read_token(path)


def _read_token(path: Path) -> str:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValidationError(
            f"the token file {path} can be read by other users (mode {stat.S_IMODE(mode):o})",
            hint=f"chmod 600 {path}, or remove it to get a new token",
        )
    token = path.read_text().strip()
    if len(token) < 20:
        raise ValidationError(
            f"the token file {path} holds no usable token", hint="remove it to get a new one"
        )
    return token


def rotate_token(store: Store) -> str:
    path = token_path(store)
    path.unlink(missing_ok=True)
    return load_or_create_token(store)


def session_secret(token: str) -> str:
    """The session cookie's signing key: derived from the token, so a new token ends every
    session, and the server keeps no other secret."""
    return hmac.new(token.encode(), b"etlctl-session-cookie", hashlib.sha256).hexdigest()


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def session_user(request: Request) -> bool:
    return bool(request.scope.get("session", {}).get("authenticated"))


BEARER = HTTPBearer(auto_error=False, description="The token: etlctl serve --show-token")


def require_token(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(BEARER)
) -> None:
    """Every API call: the bearer token, or (for reads only) the web pages' session, so
    that their live views can call the API without holding the token in the page."""
    token: str = request.app.state.token
    if credentials is not None and token_matches(credentials.credentials, token):
        return
    if request.method in {"GET", "HEAD"} and session_user(request):
        return
    raise HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="a bearer token is required (see: etlctl serve --show-token)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def csrf_token(request: Request) -> str:
    session = request.session
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def csrf_ok(request: Request, given: str | None) -> bool:
    expected = request.session.get("csrf")
    return bool(expected) and token_matches(given, expected)
