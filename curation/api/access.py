"""Who is calling the API, and what they may do: the same role rules as the app (curation/admin/permissions.py).

Place in the flow: every API request -> here (before any handler reads or writes) -> the handler runs with the
caller's actor bound, so that the library's own ``authorize`` checks apply to it exactly as in the app.

Three kinds of caller:
- a token (``Authorization: Bearer uts_...``): acts as its user, with the role the users file gives them now;
- the local key (``X-UTS-Local-Key``, from the 0600 file the server writes beside the database): a command run on
  this machine by someone who can read that file, i.e. who could open the database itself when no server runs;
  trusted like the command line (nothing bound, ``by`` as given);
- nobody: allowed only when there is no users file (the single-user laptop mode of the app) and only from this
  machine (loopback); ``by`` is then the display name, as "Working as" is in the app.

Example::

    caller = identify(state, headers, client_host)
    caller.require("decide")          # PermissionDeniedError (403) unless the role has it
"""
from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import duckdb

from curation.admin import permissions
from curation.admin.permissions import Actor
from curation.admin.tokens import InvalidTokenError, actor_for_token, sign_in_required
from curation.admin.users import users_file_path
from curation.errors import UtsError

LOCAL_KEY_HEADER = "x-uts-local-key"  # the client module spells it X-UTS-Local-Key (HTTP headers ignore case)


class AuthenticationError(UtsError, PermissionError):
    """No acceptable credentials (HTTP 401), or a caller the server does not serve (HTTP 403 when remote)."""

    def __init__(self, message: str, status: int = 401) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class Caller:
    actor: Actor | None  # bound for the library's checks; None: the trusted local caller or loopback local mode
    kind: str  # "token" | "local-key" | "loopback"

    @property
    def on_this_machine(self) -> bool:
        """Paths it sends are paths of the server's machine (the local key proves it; loopback in local mode)."""
        return self.kind in ("local-key", "loopback")

    def require(self, ability: str | None) -> None:
        if ability is not None and self.actor is not None:
            permissions.require(self.actor, ability)

    def name(self, by: str | None, field: str = "by") -> str:
        """The name a write is recorded under: the token's user (a different ``by`` is refused), else ``by``."""
        if self.actor is not None:
            if by is not None and by.strip() and by.strip() != self.actor.name:
                raise permissions.PermissionDeniedError(
                    f"{field}: this token acts as {self.actor.name!r}, so the write cannot be recorded as "
                    f"{by.strip()!r}", actor=self.actor)
            return self.actor.name
        if by is None or not by.strip():
            raise AuthenticationError(f"{field}: expected the name to record with this write (the API runs "
                                      "without sign-in here, as the app's 'Working as')", status=422)
        return by.strip()


def users_path(db_path: Path) -> Path:
    return users_file_path(db_path)


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def identify(con: duckdb.DuckDBPyConnection, db_path: Path, local_key: str | None, headers,
             client_host: str | None) -> Caller:
    """The caller of one request, or AuthenticationError. ``headers``: a case-insensitive mapping."""
    presented_key = headers.get(LOCAL_KEY_HEADER)
    if presented_key:
        if local_key and hmac.compare_digest(presented_key.encode(), local_key.encode()):
            return Caller(None, "local-key")
        raise AuthenticationError("the local key does not match this server's (it changes at every start: "
                                  "the command read a stale file?)")
    authorization = headers.get("authorization") or ""
    if authorization:
        scheme, _, secret = authorization.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthenticationError("Authorization: expected 'Bearer <token>'")
        try:
            return Caller(actor_for_token(con, users_path(db_path), secret.strip()), "token")
        except InvalidTokenError as exc:
            raise AuthenticationError(str(exc)) from None
    if sign_in_required(db_path):
        raise AuthenticationError("this server has a users file: send 'Authorization: Bearer <token>' (create one "
                                  "with `python -m curation tokens create NAME` or on the Users page)")
    if not is_loopback(client_host):
        raise AuthenticationError(f"without a users file the API serves this machine only (loopback), not "
                                  f"{client_host}; add users (python -m curation users add) to share it",
                                  status=403)
    return Caller(None, "loopback")
