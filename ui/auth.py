"""Sign-in and roles in the app: who is working, which pages they see, and the actor every write is checked
against (curation.admin.permissions).

Modes (``$UTS_AUTH``, else detected):
- ``local`` (default: no users file, no ``[auth]`` in .streamlit/secrets.toml): a single-user laptop; the app
  binds 127.0.0.1 and asks only for a display name ("Working as"); that person may do everything.
- ``users``: a local users file (``$UTS_USERS_FILE``, else users.json beside the database) with salted password
  hashes; ``python -m curation users add NAME --role annotator|curator|admin`` fills it. Chosen automatically
  when that file exists.
- ``oidc``: Streamlit's built-in OpenID Connect sign-in (``st.login``), chosen automatically when secrets.toml has
  an ``[auth]`` section; the provider's email is mapped to a role through the users file.

The router calls ``sign_in()`` before any page runs: it stops the run with a sign-in form when sign-in is
required, and binds the actor so that the library refuses any write the role does not allow.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from curation import settings
from curation.admin import permissions
from curation.admin.permissions import Actor
from curation.admin.users import SignInThrottle, UsersFileError, user_for_email, users_file_path, verify_password
from ui.db import db_path
from ui.text import escape_markdown

MODES = ("local", "users", "oidc")
_SESSION_KEY = "_uts_signed_in"  # the signed-in user's name (users mode)
_ACTOR_KEY = "_uts_actor"

# Which ability a page needs to be shown, by its file name in views/. Pages not listed are admin-only until
# someone lists them (safe by default).
PAGE_ABILITIES: dict[str, str | None] = {
    "overview": None, "audit": "audit", "browse": "browse", "audit_dashboard": "browse", "vocabulary": "decide",
    "tag_map": "decide", "export": "export", "runs": "runs", "compare": "runs", "extraction": "runs",  # compute jobs: admins
    "users": "users",
}
FALLBACK_ABILITY = "users"


def auth_mode() -> str:
    configured = (settings.AUTH.value() or "").lower()
    if configured in ("local", "none"):
        return "local"
    if configured in MODES:
        return configured
    if configured:
        st.error(f"{settings.AUTH.name}={configured!r}: expected one of {', '.join(MODES)} (or unset)")
        st.stop()
    if _oidc_configured():
        return "oidc"
    if users_file().exists():
        return "users"
    return "local"


def _oidc_configured() -> bool:
    return bool(st.secrets.load_if_toml_exists() and "auth" in st.secrets)


def users_file() -> Path:
    """The users file of this app's database."""
    return users_file_path(db_path())


def sign_in() -> Actor | None:
    """The actor of this run (bound for the library's checks); stops the run with a sign-in form when needed."""
    mode = auth_mode()
    try:
        actor = {"local": _local_actor, "users": _password_actor, "oidc": _oidc_actor}[mode]()
    except UsersFileError as exc:
        st.error(str(exc))
        st.stop()
        raise  # st.stop() raises; for type checkers
    st.session_state[_ACTOR_KEY] = actor
    permissions.bind(actor)
    return actor


def continue_signed_in_as(name: str) -> None:
    """The person who just created the first user (and so turned sign-in on) stays in, signed in as that user,
    instead of meeting a sign-in form for the account they made a second ago."""
    st.session_state[_SESSION_KEY] = name


def ensure_bound() -> Actor | None:
    """Re-bind this session's actor (a fragment rerun does not pass through the router)."""
    actor = st.session_state.get(_ACTOR_KEY)
    permissions.bind(actor)
    return actor


def current_actor() -> Actor | None:
    return permissions.bound_actor()


def can(ability: str) -> bool:
    """Whether to offer an action: in local mode with no name yet everything is offered (the write will ask
    for a name); the library still checks every write."""
    actor = current_actor()
    return actor is None or actor.can(ability)


def _local_actor() -> Actor | None:
    # The name is kept in the page address (?display_name=...): a reload or a bookmark keeps who is working. A
    # fresh session (a reload) takes it from there before the sidebar's box is drawn.
    if "display_name" not in st.session_state and st.query_params.get("display_name"):
        st.session_state["display_name"] = st.query_params["display_name"]
    name = (st.session_state.get("display_name") or "").strip()
    return Actor(name, "admin", signed_in=False) if name else None


def _password_actor() -> Actor:
    path = users_file()
    name = st.session_state.get(_SESSION_KEY)
    if name:
        from curation.admin.users import get_user

        user = get_user(path, name)
        if user is not None:  # re-read every run: a removed user or a changed role takes effect at once
            return Actor(user.name, user.role, signed_in=True)
        st.session_state.pop(_SESSION_KEY, None)
        st.warning(f"{name!r} is no longer in the users file; sign in again.")
    if not path.exists():
        st.error(f"Sign-in is required ({settings.AUTH.name}=users) but there is no users file at {path}: add a user "
                 "with `python -m curation users add NAME --role admin`.")
        st.stop()
    st.title("Sign in to UTS Studio")
    with st.form("sign_in", clear_on_submit=True):  # the password never lingers in session state
        user_name = st.text_input("User name", key="sign_in_name")
        password = st.text_input("Password", type="password", key="sign_in_password")
        if st.form_submit_button("Sign in"):
            throttle, name = _throttle(), user_name.strip()
            wait_s = throttle.wait_s(name)
            user = verify_password(path, name, password) if wait_s == 0 else None
            if wait_s > 0:
                st.error(f"Too many failed sign-ins for this name: try again in {wait_s:.0f} s.")
            elif user is None:
                throttle.failed(name)
                st.error("Unknown user name or wrong password.")
            else:
                throttle.succeeded(name)
                st.session_state[_SESSION_KEY] = user.name
                st.rerun()
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


@st.cache_resource(show_spinner=False)
def _throttle() -> SignInThrottle:
    return SignInThrottle()


def _oidc_actor() -> Actor:
    if not st.user.is_logged_in:
        st.title("Sign in to UTS Studio")
        st.write("This app is shared: sign in with your organisation's account.")
        if st.button("Sign in", key="oidc_sign_in"):
            st.login()
        st.stop()
    email = st.user.get("email")
    user = user_for_email(users_file(), email)
    if user is None:
        st.error(f"Signed in as {email!r}, but no role is assigned to that address: ask an admin to run "
                 f"`python -m curation users add {email or 'EMAIL'} --role annotator|curator|admin --no-password`.")
        if st.button("Sign out", key="oidc_sign_out_unknown"):
            st.logout()
        st.stop()
    return Actor(user.name, user.role, signed_in=True)


def visible_pages(pages: list, actor: Actor | None) -> list:
    """The pages this actor may use (all of them in local mode); the others are not registered at all, so a
    deep link to one lands on the default page."""
    if actor is None or not actor.signed_in:
        return list(pages)
    return [page for page in pages if _page_ability(page) is None or actor.can(_page_ability(page))]


def _page_ability(page) -> str | None:
    script = getattr(page, "_page", None)
    stem = Path(script).stem if isinstance(script, (str, Path)) else str(page.title).lower().replace(" ", "_")
    return PAGE_ABILITIES.get(stem, FALLBACK_ABILITY)


def render_account(actor: Actor | None) -> None:
    """The sidebar's who-is-working block: a display name in local mode, the signed-in user otherwise."""
    if actor is None or not actor.signed_in:
        name = st.text_input("Working as", key="display_name", placeholder="your name",
                             help="Recorded with every decision and verdict you make (kept in the page address, so "
                                  "a reload keeps it).")
        # Not a bound widget (bind="query-params"): a bound parameter makes st.switch_page fail. The address is
        # written on every run instead, so it is there again after a page switch dropped it.
        if (name or "").strip():
            if st.query_params.get("display_name") != name.strip():
                st.query_params["display_name"] = name.strip()
        elif "display_name" in st.query_params:
            del st.query_params["display_name"]
        return
    st.markdown(f"Signed in as **{escape_markdown(actor.name)}** ({actor.role})")
    if st.button("Sign out", key="sign_out"):
        if auth_mode() == "oidc":
            st.logout()
        st.session_state.pop(_SESSION_KEY, None)
        st.session_state.pop(_ACTOR_KEY, None)
        st.rerun()
