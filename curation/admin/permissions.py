"""Roles and what each may do; the one check every write of the library goes through.

Place in the flow: the app signs a person in (ui/auth.py) and binds an ``Actor`` for the rest of that script
run; every library function that writes (record_decision, audit submit / next_item / create_campaign,
export_vocabulary, reject_suggestion, run launches) calls ``authorize(ability, by)`` first. A page therefore
cannot skip the check: the router binds the actor before any page runs, and the library refuses a write the
bound actor may not make, or one that names somebody else, before anything is written.

Nothing bound (the CLI, tests, scripts) means a trusted local caller: whoever can open the database file may
write it anyway, so the file system is the boundary there.

Example::

    with acting_as(Actor("bo", "annotator", signed_in=True)):
        record_decision(con, Decision.prune(["studio"]), by="bo")   # PermissionDeniedError: nothing written
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Iterator

from curation.errors import UtsError

ROLES = ("annotator", "curator", "admin")

# audit: judge clips in an audit queue; browse: read the corpus pages (Browse, Tag map, Captioner bias);
# decide: curation decisions (merge, rename, prune, per-clip edits, suggestion verdicts); campaign: create audit
# campaigns; export: write vocabulary exports; runs: launch and import training runs; users: manage sign-ins;
# backup: write a backup of the database from the app.
ABILITIES = ("audit", "browse", "decide", "campaign", "export", "runs", "users", "backup")

ABILITY_TEXT = {"audit": "judging clips in an audit", "browse": "browsing the corpus",
                "decide": "making curation decisions", "campaign": "creating audit campaigns",
                "export": "exporting vocabularies", "runs": "launching runs and tagging jobs", "users": "managing users",
                "backup": "backing up the database"}

ROLE_ABILITIES: dict[str, frozenset[str]] = {
    "annotator": frozenset({"audit"}),
    "curator": frozenset({"audit", "browse", "decide", "campaign", "export"}),
    "admin": frozenset(ABILITIES),
}


class PermissionDeniedError(UtsError, PermissionError):
    """The signed-in person's role does not allow this action (nothing was written)."""

    def __init__(self, message: str, *, actor: "Actor | None" = None, ability: str | None = None) -> None:
        self.actor = actor
        self.ability = ability
        super().__init__(message)


@dataclass(frozen=True)
class Actor:
    """Who is acting: the name recorded with every write and the role that bounds what they may do."""

    name: str
    role: str  # one of ROLES
    signed_in: bool = False  # False: the single-user laptop mode (a display name, every ability)

    def can(self, ability: str) -> bool:
        return ability in ROLE_ABILITIES.get(self.role, frozenset())


def roles_with(ability: str) -> list[str]:
    return [role for role in ROLES if ability in ROLE_ABILITIES[role]]


def require(actor: Actor | None, ability: str) -> Actor:
    """The actor, if their role has ``ability``; else PermissionDeniedError naming who, what and which roles may."""
    if ability not in ABILITIES:
        raise ValueError(f"unknown ability {ability!r}; expected one of {ABILITIES}")  # a programming error
    if actor is None:
        raise PermissionDeniedError(f"{ability}: sign in first (allowed roles: {', '.join(roles_with(ability))})",
                                    ability=ability)
    if not actor.can(ability):
        raise PermissionDeniedError(
            f"{actor.name!r} (role {actor.role}) may not {ability}: {ABILITY_TEXT[ability]} needs the role "
            f"{' or '.join(roles_with(ability))}; ask an admin (python -m curation users set-role)",
            actor=actor, ability=ability)
    return actor


_BOUND: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("uts_actor", default=None)


def bind(actor: Actor | None) -> None:
    """Make ``actor`` the one every write in this thread's current context is checked against."""
    _BOUND.set(actor)


def bound_actor() -> Actor | None:
    return _BOUND.get()


@contextlib.contextmanager
def acting_as(actor: Actor | None) -> Iterator[Actor | None]:
    token = _BOUND.set(actor)
    try:
        yield actor
    finally:
        _BOUND.reset(token)


def authorize(ability: str, by: str | None = None) -> str | None:
    """The name to record with a write that needs ``ability``.

    With an actor bound (the app): refuse unless their role has the ability, refuse a write recorded under
    another name, and return the actor's name. With none bound (CLI, scripts): return ``by`` unchanged.
    """
    actor = _BOUND.get()
    if actor is None:
        return by
    require(actor, ability)
    if by is not None and isinstance(by, str) and by.strip() and by.strip() != actor.name:
        raise PermissionDeniedError(
            f"{ability}: signed in as {actor.name!r}, so this cannot be recorded as {by.strip()!r}",
            actor=actor, ability=ability)
    return actor.name
