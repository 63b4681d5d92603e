"""API tokens: how a script, a notebook or a cluster job acts as a user of the users file through the HTTP API.

Place in the flow: made by ``python -m curation tokens create``, the Users page or ``POST /api/v1/tokens``;
checked by the API (curation/api/) on every request. A token is ``uts_`` + 43 random URL-safe characters, shown
once; only its SHA-256 is stored (a stolen database does not hand out working tokens; a token has 256 random bits,
so a plain fast hash is enough, unlike a password). The role comes from the users file at each request, so a
changed role or a removed user takes effect at once; a revoked token is refused at once.

Who may: an admin (the "users" ability) creates, lists and revokes tokens of anyone; every other user only their
own. Nothing bound (the CLI on the machine holding the database) is the trusted local caller.

Example::

    secret, record = create_token(con, users_path, "ana", label="nightly export", by="ana")
    actor = actor_for_token(con, users_path, secret)        # Actor("ana", "curator", signed_in=True)
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from curation import settings
from curation.admin import permissions
from curation.admin.permissions import Actor, PermissionDeniedError
from curation.admin.users import get_user, users_file_path
from curation.errors import UtsError
from curation.store import tokens as store_tokens

TOKEN_PREFIX = "uts_"
SHOWN_PREFIX_CHARS = 10  # "uts_" and 6 more: enough to tell one's tokens apart, far too few to guess the rest


class TokenError(UtsError, ValueError):
    """A token request that cannot be carried out (unknown user or token, bad label)."""


class InvalidTokenError(UtsError, PermissionError):
    """The presented token is unknown, revoked, or belongs to a user no longer in the users file."""


@dataclass(frozen=True)
class TokenRecord:
    token_id: int
    user_name: str
    label: str | None
    prefix: str  # the token's first characters, for recognising it in a list
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def as_dict(self) -> dict:
        return {"token_id": self.token_id, "user": self.user_name, "label": self.label, "prefix": self.prefix,
                "created_by": self.created_by, "created_at": _iso(self.created_at),
                "last_used_at": _iso(self.last_used_at), "revoked_at": _iso(self.revoked_at),
                "revoked_by": self.revoked_by, "active": self.active}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def _record(row: dict) -> TokenRecord:
    return TokenRecord(**row)


def token_sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _may_manage(user_name: str, what: str) -> str | None:
    """The acting name when the bound actor may manage ``user_name``'s tokens (themselves, or an admin)."""
    actor = permissions.bound_actor()
    if actor is None:
        return None
    if actor.name != user_name and not actor.can("users"):
        raise PermissionDeniedError(
            f"{actor.name!r} (role {actor.role}) may {what} only their own tokens, not {user_name!r}; "
            f"an admin may {what} anyone's", actor=actor, ability="users")
    return actor.name


def create_token(con: duckdb.DuckDBPyConnection, users_path: Path, user_name: str, *, label: str | None = None,
                 by: str | None = None) -> tuple[str, TokenRecord]:
    """A new token for ``user_name`` (a user of the users file): (the secret, shown once; its record)."""
    if not isinstance(user_name, str) or not user_name.strip():
        raise TokenError("user: expected the name of a user of the users file")
    user_name = user_name.strip()
    acting = _may_manage(user_name, "create")
    if label is not None and (not isinstance(label, str) or len(label) > 200):
        raise TokenError("label: expected a text of at most 200 characters")
    if not Path(users_path).exists():
        raise TokenError(f"user {user_name!r}: there is no users file at {users_path}; a token acts as a user of "
                         "that file (python -m curation users add NAME --role ...). Without a users file the API "
                         "needs no token and serves this machine (loopback) only")
    if get_user(Path(users_path), user_name) is None:
        raise TokenError(f"user {user_name!r}: expected a user of {users_path} "
                         "(`python -m curation users list` shows who is there)")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = store_tokens.insert_token(con, user_name=user_name, label=(label or "").strip() or None,
                                    prefix=secret[:SHOWN_PREFIX_CHARS], token_sha256=token_sha256(secret),
                                    created_by=acting or (by or "").strip() or user_name)
    return secret, _record(row)


def list_tokens(con: duckdb.DuckDBPyConnection, user_name: str | None = None) -> list[TokenRecord]:
    """Tokens (revoked ones too, marked), oldest first. A bound non-admin actor sees only their own."""
    actor = permissions.bound_actor()
    if actor is not None and not actor.can("users"):
        if user_name is not None and user_name != actor.name:
            _may_manage(user_name, "list")
        user_name = actor.name
    return [_record(row) for row in store_tokens.list_tokens(con, user_name)]


def revoke_token(con: duckdb.DuckDBPyConnection, token_id: int, *, by: str | None = None) -> TokenRecord:
    """Revoke a token (refused at once from then on); revoking a revoked token changes nothing."""
    row = store_tokens.token_row(con, token_id) if isinstance(token_id, int) else None
    if row is None:
        raise TokenError(f"token {token_id!r}: expected the id of a token (`python -m curation tokens list`)")
    acting = _may_manage(row["user_name"], "revoke")
    store_tokens.revoke_token(con, token_id, acting or (by or "").strip() or "local")
    return _record(store_tokens.token_row(con, token_id))


def actor_for_token(con: duckdb.DuckDBPyConnection, users_path: Path, secret: str) -> Actor:
    """The user a token acts as, with their role as the users file says now; stamps the token's last use."""
    row = store_tokens.token_by_hash(con, token_sha256(secret)) if isinstance(secret, str) and secret else None
    if row is None:
        raise InvalidTokenError("the token is not known: check it, or create one (python -m curation tokens create)")
    if row["revoked_at"] is not None:
        raise InvalidTokenError(f"token {row['prefix']}... was revoked by {row['revoked_by']} at "
                                f"{_iso(row['revoked_at'])}")
    user = get_user(Path(users_path), row["user_name"]) if Path(users_path).exists() else None
    if user is None:
        raise InvalidTokenError(f"token {row['prefix']}... belongs to {row['user_name']!r}, who is no longer in the "
                                "users file")
    store_tokens.stamp_last_use(con, row["token_id"], row["last_used_at"])
    return Actor(user.name, user.role, signed_in=True)


def sign_in_required(db_path: str | Path) -> bool:
    """Whether callers of the API must present a token, decided as the app decides sign-in (ui/auth.auth_mode):
    $UTS_AUTH local/none turns it off, users/oidc on; unset, a users file beside the database (or at
    $UTS_USERS_FILE) turns it on. Read per request: adding the first user turns it on at once, as in the app."""
    configured = (settings.AUTH.value() or "").lower()
    if configured in ("local", "none"):
        return False
    if configured in ("users", "oidc"):
        return True
    return users_file_path(db_path).exists()
