"""Users (admins): who may sign in, with which role; add, change the role of, or remove a user (the same users
file as `python -m curation users ...`); and a backup of the database while the app holds it."""
from datetime import datetime, timezone
from pathlib import Path

import streamlit as st

from curation.admin.backup import BackupError, backup_database
from curation.admin.permissions import ROLES
from curation.admin.users import UsersFileError, add_user, admin_names, list_users, remove_user, set_role
from ui.auth import auth_mode, continue_signed_in_as, current_actor, users_file
from ui.db import db_cursor, db_path
from ui.state import flash, show_flash
from ui.tokens import render_tokens

st.title("Users")
show_flash()
path = users_file()
mode = auth_mode()
me = current_actor()
users = list_users(path)
if mode == "local":
    st.warning("Sign-in is off: this app runs for one person on this machine. Adding the first user turns "
               "sign-in on (from the next click on): the first user is therefore an **admin**, and you will sign "
               "in with the name and password you give here.")
st.caption(f"Users file: `{path}` · sign-in mode: {mode}")

st.dataframe([{"name": u.name, "role": u.role, "email": u.email or "", "sign-in": "password" if u.has_password
               else "identity provider", "since": u.created_at} for u in users],
             hide_index=True, width="stretch", key="users_table")

with st.form("add_user", clear_on_submit=True):
    st.markdown("**Add a user**")
    c1, c2, c3 = st.columns(3)
    name = c1.text_input("User name (or the email the identity provider reports)", key="new_user_name")
    # The first user is an admin (curation.admin.users refuses anything else); nobody can lock the app out.
    role = c2.selectbox("Role", ROLES if users else ("admin",), key="new_user_role" if users else "first_user_role",
                        help=None if users else "The first user is an admin: somebody must be able to manage users.")
    email = c3.text_input("Email (optional, for identity-provider sign-in)", key="new_user_email")
    p1, p2 = st.columns(2)
    password = p1.text_input("Password (leave empty for identity-provider sign-in only)", type="password",
                             key="new_user_password")
    again = p2.text_input("Password again", type="password", key="new_user_password_again")
    if st.form_submit_button("Add user"):
        if password != again:
            st.error("The two passwords differ.")
        elif role is None:
            st.error("Choose a role for the new user.")
        else:
            try:
                user = add_user(path, name.strip(), role=role, password=password or None, email=email.strip() or None)
                if not users and mode == "local":  # the first user: sign-in is on from now, and they are in
                    continue_signed_in_as(user.name)
                    flash(f"Added {user.name} ({user.role}). Sign-in is on: you are signed in as {user.name}.")
                else:
                    flash(f"Added {user.name} ({user.role}).")
                st.rerun()
            except UsersFileError as exc:
                st.error(str(exc))

others = [u.name for u in users if me is None or u.name != me.name]  # nobody removes or demotes themselves
if others:
    st.markdown("**Change a role or remove a user**")
    admins = admin_names(path)
    if len(admins) == 1:
        st.caption(f"{admins[0]} is the only admin: they can be neither removed nor demoted until another user "
                   "is made admin.")
    c1, c2, c3, c4 = st.columns([2, 2, 1, 1], vertical_alignment="bottom")
    who = c1.selectbox("User", others, key="edit_user")
    new_role = c2.selectbox("New role", ROLES, key="edit_user_role")
    try:
        if c3.button("Set role", key="set_role_button"):
            set_role(path, who, new_role)
            flash(f"{who} is now {new_role}.")
            st.rerun()
        if c4.button("Remove", key="remove_user_button"):
            remove_user(path, who)
            flash(f"Removed {who}.")
            st.rerun()
    except UsersFileError as exc:
        st.error(str(exc))

render_tokens()

st.subheader("Back up the database")
st.caption("A consistent copy taken while the app keeps running (the command line needs the app stopped). "
           "Restore with `python -m curation restore FILE --db DB` with the app stopped.")
stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
target = st.text_input("Backup file", value=str(Path(db_path()).parent / "backups" / f"uts-{stamp}.duckdb"),
                       key="backup_path")
if st.button("Back up now", key="backup_button"):
    try:
        with st.spinner("Copying the database..."):
            summary = backup_database(db_cursor(), Path(target))
        st.success(f"Backed up {summary.rows:,} rows of {summary.tables} tables ({summary.bytes / 1e6:,.1f} MB) "
                   f"in {summary.seconds:.1f} s.")
    except BackupError as exc:
        st.error(str(exc))

