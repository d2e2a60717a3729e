"""An HTTP session whose credentials go to one origin only.

An API's next-page link, its Link header or a redirect may point anywhere; a bearer token
or an API key must reach only the server the user configured. So the credentials (the
configured ``headers``, ``bearer_token``, and the user:password of the URL) are not session
headers: each request carries them only when its origin (scheme, host, port) is the
configured URL's, and a redirect that leaves that origin drops them before it is followed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
from requests.auth import _basic_auth_str
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

DEFAULT_PORTS = {"http": 80, "https": 443}


NO_ORIGIN = ("", "", -1)  # what a URL requests cannot send to compares equal to nothing


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of the server requests would really connect to for ``url``.

    Read the way requests does (prepare_url, then urllib3's parse_url, as its connection
    pool does), not with another parser: a URL such as ``http://evil\\@good/`` must not look
    like one origin here and reach another.
    """
    try:
        prepared = requests.PreparedRequest()
        prepared.prepare_url(url, None)
        parsed = parse_url(prepared.url)
    except (requests.RequestException, LocationParseError, ValueError, UnicodeError):
        return NO_ORIGIN
    scheme = (parsed.scheme or "").lower()
    host = (parsed.host or "").lower().rstrip(".")
    if not host:
        return NO_ORIGIN
    return (scheme, host, parsed.port or DEFAULT_PORTS.get(scheme))


def without_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without ``user:password@``, and the (unquoted) user and password it held."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), (unquote(user), unquote(password))


class OriginBoundSession(requests.Session):
    """A requests session that sends ``credentials`` (headers) to ``home`` only."""

    def __init__(self, home_url: str, credentials: dict[str, str]) -> None:
        super().__init__()
        self.home = origin(home_url)
        self.credentials = requests.structures.CaseInsensitiveDict(credentials)

    def headers_for(self, url: str) -> dict[str, str]:
        return dict(self.credentials) if origin(url) == self.home else {}

    def get_with_credentials(self, url: str, **kwargs: Any) -> requests.Response:
        return self.get(url, headers=self.headers_for(url), **kwargs)

    def rebuild_auth(self, prepared_request: Any, response: requests.Response) -> None:
        """Called by requests before it follows a redirect: off the origin no credential
        survives (requests itself only drops Authorization when the host changes); back on
        it, they are sent again."""
        super().rebuild_auth(prepared_request, response)
        for name in self.credentials:
            prepared_request.headers.pop(name, None)
        prepared_request.headers.update(self.headers_for(prepared_request.url))


def credentials_of(config: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The first page's URL without userinfo, and every credential header of the config."""
    url, userinfo = without_userinfo(config["url"])
    credentials = dict(config.get("headers") or {})
    if userinfo is not None:
        credentials["Authorization"] = _basic_auth_str(*userinfo)
    if config.get("bearer_token"):
        credentials["Authorization"] = f"Bearer {config['bearer_token']}"
    return url, credentials
