"""The API tokens section of the Users page: list with last use, create (the token shown once), revoke.

The library (curation/admin/tokens.py) checks who may: an admin manages anyone's tokens, others only their own.
"""
from __future__ import annotations

import streamlit as st

from curation.admin.tokens import create_token, list_tokens, revoke_token
from curation.admin.users import list_users
from curation.errors import UtsError
from ui.auth import current_actor, users_file
from ui.db import db_cursor
from ui.state import flash

_NEW_TOKEN_KEY = "_uts_new_token"  # shown on the one rerun after creation, then gone


def render_tokens() -> None:
    st.subheader("API tokens")
    st.caption("A token lets a script, a notebook or a cluster job act as a user through the API "
               "(`/api/v1`, `curation.client`, `UTS_TOKEN`). It is shown once; only its hash is stored.")
    new = st.session_state.pop(_NEW_TOKEN_KEY, None)
    if new:
        st.warning(f"Token for {new['user']}: copy it now, it will not be shown again.")
        st.code(new["token"], language=None)
    tokens = [t.as_dict() for t in list_tokens(db_cursor())]
    if tokens:
        st.dataframe([{k: t[k] for k in ("token_id", "user", "label", "prefix", "created_by", "created_at",
                                         "last_used_at", "active")} for t in tokens],
                     hide_index=True, width="stretch", key="tokens_table")
    else:
        st.caption("No tokens yet.")
    users = [u.name for u in list_users(users_file())]
    me = current_actor()
    if me is not None and me.signed_in and not me.can("users"):
        users = [name for name in users if name == me.name]
    if not users:
        st.caption("Tokens act as users of the users file: add a user first.")
        return
    c1, c2, c3 = st.columns([2, 3, 1], vertical_alignment="bottom")
    user = c1.selectbox("Token for", users, key="token_user")
    label = c2.text_input("What it is for", key="token_label", placeholder="e.g. nightly export")
    if c3.button("Create token", key="token_create"):
        try:
            secret, record = create_token(db_cursor(), users_file(), user, label=label.strip() or None,
                                          by=me.name if me else None)
            st.session_state[_NEW_TOKEN_KEY] = {"user": record.user_name, "token": secret}
            st.rerun()
        except UtsError as exc:
            st.error(str(exc))
    active = [t for t in tokens if t["active"]]
    if active:
        r1, r2 = st.columns([5, 1], vertical_alignment="bottom")
        chosen = r1.selectbox("Token to revoke", active, key="token_revoke_pick",
                              format_func=lambda t: f"#{t['token_id']} {t['user']} {t['prefix']}... {t['label'] or ''}")
        if r2.button("Revoke", key="token_revoke"):
            try:
                revoke_token(db_cursor(), chosen["token_id"], by=me.name if me else None)
                flash(f"Revoked token #{chosen['token_id']} of {chosen['user']}.")
                st.rerun()
            except UtsError as exc:
                st.error(str(exc))
