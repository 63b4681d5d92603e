"""The local users file: who may sign in to a shared app, with which role, and their salted password hash.

Place in the flow: written by ``python -m curation users add|remove|set-role``; read by the app's sign-in
(ui/auth.py) and, with an identity provider (Streamlit's OIDC ``st.login``), used to map the signed-in email
to a role. A JSON file (mode 0600), replaced atomically on every change, so a crash never leaves half a file.
Passwords are stored as scrypt hashes with a per-user random salt and compared in constant time.
The first user is an admin, and no change (remove, set-role, add --replace) may leave the file without one: an
app whose sign-in turned on must always have somebody who can reach its Users page.

Where: ``$UTS_USERS_FILE``, else ``users.json`` beside the database.

Example::

    add_user(path, "ana", role="curator", password="s3cret-words")
    user = verify_password(path, "ana", "s3cret-words")     # -> User(name="ana", role="curator", ...)
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from curation import settings
from curation.admin import permissions
from curation.admin.permissions import ROLES
from curation.errors import UtsError

FORMAT_VERSION = 1
# scrypt cost: ~50 ms per check on one core (slows guessing; a sign-in is rare).
SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_BYTES, SALT_BYTES = 2**14, 8, 1, 32, 16
MIN_PASSWORD_CHARS = 8
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")


class UsersFileError(UtsError, ValueError):
    """The users file is unreadable or malformed, or a user request cannot be carried out."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    email: str | None
    has_password: bool
    created_at: str


def users_file_path(db_path: str | os.PathLike | None = None) -> Path:
    """$UTS_USERS_FILE, else users.json in the database's folder."""
    configured = settings.USERS_FILE.value()
    if configured:
        return Path(configured)
    from curation import store

    return store.resolve_db_path(db_path).parent / "users.json"


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=KEY_BYTES,
                          maxmem=64 * 1024 * 1024)


def _load(path: Path) -> dict:
    if not path.exists():
        return {"version": FORMAT_VERSION, "users": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsersFileError(f"{path}: expected a users file written by `python -m curation users add`, "
                             f"found unreadable content ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
        raise UsersFileError(f"{path}: expected a JSON object with a 'users' object; fix or remove the file")
    if data.get("version") != FORMAT_VERSION:
        raise UsersFileError(f"{path}: users file version {data.get('version')!r}, this code reads version "
                             f"{FORMAT_VERSION}")
    return data


def _save(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=".users-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _user(name: str, entry: dict) -> User:
    return User(name=name, role=entry.get("role", ""), email=entry.get("email"),
                has_password=bool(entry.get("hash")), created_at=entry.get("created_at", ""))


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise UsersFileError(f"role {role!r}: expected one of {', '.join(ROLES)}")


def add_user(path: Path, name: str, *, role: str, password: str | None = None, email: str | None = None,
             replace: bool = False) -> User:
    """Add (or with replace=True, reset) a user. Without a password the user can only sign in through the
    identity provider, matched by ``email`` (or by ``name`` when it is an email address)."""
    permissions.authorize("users")  # in the app: admins only
    if not isinstance(name, str) or not _NAME.match(name):
        raise UsersFileError(f"user name {name!r}: expected 1-64 letters, digits or . _ @ + - (starting with a "
                             "letter or digit)")
    _check_role(role)
    if password is not None and len(password) < MIN_PASSWORD_CHARS:
        raise UsersFileError(f"password for {name!r}: expected at least {MIN_PASSWORD_CHARS} characters")
    if password is None and not email and "@" not in name:
        raise UsersFileError(f"user {name!r}: give a password, or an --email the identity provider signs in")
    data = _load(path)
    if name in data["users"] and not replace:
        raise UsersFileError(f"user {name!r} exists already in {path}; remove it first or use set-role")
    if not data["users"] and role != "admin":
        raise UsersFileError(f"user {name!r}: the first user must be an admin (role {role!r} given): adding a user "
                             "turns sign-in on, and without an admin nobody could manage users; add yourself with "
                             "--role admin first")
    if replace and name in data["users"]:
        _refuse_losing_the_last_admin(path, data, name, role)
    entry: dict = {"role": role, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if email:
        entry["email"] = email.strip().lower()
    if password is not None:
        salt = secrets.token_bytes(SALT_BYTES)
        entry.update(kdf="scrypt", n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, salt=salt.hex(),
                     hash=_hash(password, salt).hex())
    data["users"][name] = entry
    _save(path, data)
    return _user(name, entry)


def remove_user(path: Path, name: str) -> None:
    permissions.authorize("users")
    data = _load(path)
    if name not in data["users"]:
        raise UsersFileError(f"no user {name!r} in {path}; `python -m curation users list` shows who is there")
    _refuse_losing_the_last_admin(path, data, name, None)
    del data["users"][name]
    _save(path, data)


def set_role(path: Path, name: str, role: str) -> User:
    permissions.authorize("users")
    _check_role(role)
    data = _load(path)
    if name not in data["users"]:
        raise UsersFileError(f"no user {name!r} in {path}; add them with `python -m curation users add`")
    _refuse_losing_the_last_admin(path, data, name, role)
    data["users"][name]["role"] = role
    _save(path, data)
    return _user(name, data["users"][name])


def admin_names(path: Path) -> list[str]:
    return sorted(name for name, entry in _load(path)["users"].items() if entry.get("role") == "admin")


def _refuse_losing_the_last_admin(path: Path, data: dict, name: str, new_role: str | None) -> None:
    """Refuse removing (``new_role`` None) or demoting ``name`` when they are the only admin left."""
    if data["users"][name].get("role") != "admin" or new_role == "admin":
        return
    admins = [other for other, entry in data["users"].items() if entry.get("role") == "admin"]
    if admins == [name]:
        what = "remove" if new_role is None else f"make {new_role} of"
        raise UsersFileError(f"cannot {what} {name!r}: they are the last admin in {path}, and without an admin "
                             "nobody can manage users; make another user admin first")


def list_users(path: Path) -> list[User]:
    return [_user(name, entry) for name, entry in sorted(_load(path)["users"].items())]


def get_user(path: Path, name: str) -> User | None:
    entry = _load(path)["users"].get(name)
    return _user(name, entry) if entry is not None else None


_DUMMY_SALT = secrets.token_bytes(SALT_BYTES)


def verify_password(path: Path, name: str, password: str) -> User | None:
    """The user when the password matches; None otherwise. Unknown names cost the same hash as known ones,
    so the time taken does not tell which names exist."""
    entry = _load(path)["users"].get(name) if isinstance(name, str) else None
    if not isinstance(password, str):
        return None
    if entry is None or not entry.get("hash"):
        hmac.compare_digest(_hash(password, _DUMMY_SALT), bytes(KEY_BYTES))
        return None
    if (entry.get("kdf"), entry.get("n"), entry.get("r"), entry.get("p")) != ("scrypt", SCRYPT_N, SCRYPT_R,
                                                                              SCRYPT_P):
        raise UsersFileError(f"{path}: user {name!r} has a password hash this code cannot check; reset it with "
                             "`python -m curation users add --replace`")
    if hmac.compare_digest(_hash(password, bytes.fromhex(entry["salt"])), bytes.fromhex(entry["hash"])):
        return _user(name, entry)
    return None


def user_for_email(path: Path, email: str | None) -> User | None:
    """The user an identity provider's email maps to: their ``email`` field, or a name equal to the email."""
    if not email:
        return None
    wanted = email.strip().lower()
    for user in list_users(path):
        if (user.email or "") == wanted or user.name.lower() == wanted:
            return user
    return None


class SignInThrottle:
    """Slows password guessing: after ``max_failures`` failed sign-ins for one name (known or not, so it tells
    nothing about which names exist), that name is refused for ``lockout_s`` seconds. One per app process."""

    def __init__(self, max_failures: int = 5, lockout_s: float = 30.0, clock=time.monotonic) -> None:
        self.max_failures, self.lockout_s, self.clock = max_failures, lockout_s, clock
        self._failures: dict[str, tuple[int, float]] = {}  # name -> (consecutive failures, time of the last)
        self._lock = threading.Lock()

    def wait_s(self, name: str) -> float:
        """Seconds until ``name`` may try again (0: now)."""
        with self._lock:
            count, last = self._failures.get(name, (0, 0.0))
        if count < self.max_failures:
            return 0.0
        return max(0.0, last + self.lockout_s - self.clock())

    def failed(self, name: str) -> None:
        with self._lock:
            count, last = self._failures.get(name, (0, 0.0))
            if count >= self.max_failures and self.clock() >= last + self.lockout_s:
                count = 0  # the lockout is over: a new series of tries
            self._failures[name] = (count + 1, self.clock())

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)

