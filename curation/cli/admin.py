"""``python -m curation users | backup | restore``: who may sign in, and keeping the database safe.

Example::

    python -m curation users add ana --role curator            # asks for the password twice
    echo "$PASSWORD" | python -m curation users add bo --role annotator --password-stdin
    python -m curation users add carol@example.org --role admin --no-password   # signs in through the provider
    python -m curation backup --db data/uts.duckdb --out backups/uts.duckdb
    python -m curation restore backups/uts.duckdb --db data/uts.duckdb --force
"""
from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from curation.errors import UsageError

COMMANDS = ("users", "backup", "restore", "tokens")


def add_commands(commands, db_argument) -> None:
    users = commands.add_parser("users", help="who may sign in to a shared app, and with which role")
    user_actions = users.add_subparsers(dest="users_action", required=True)
    add = user_actions.add_parser("add", help="add a user (or --replace to reset one)")
    add.add_argument("name", help="user name (an email address for identity-provider sign-in)")
    add.add_argument("--role", required=True, choices=("annotator", "curator", "admin"))
    add.add_argument("--email", help="the email the identity provider reports for this user")
    secret = add.add_mutually_exclusive_group()
    secret.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    secret.add_argument("--no-password", action="store_true",
                        help="no password: the user signs in only through the identity provider")
    add.add_argument("--replace", action="store_true", help="replace an existing user of that name")
    remove = user_actions.add_parser("remove", help="remove a user")
    remove.add_argument("name")
    role = user_actions.add_parser("set-role", help="change a user's role")
    role.add_argument("name")
    role.add_argument("role", choices=("annotator", "curator", "admin"))
    listing = user_actions.add_parser("list", help="list users and roles")
    listing.add_argument("--json", action="store_true")
    for sub in (add, remove, role, listing):
        db_argument(sub)
        sub.add_argument("--users-file", help="users file (default: $UTS_USERS_FILE, else users.json beside the "
                                              "database)")

    tokens = commands.add_parser("tokens", help="API tokens: a script or notebook acting as a user (shown once)")
    token_actions = tokens.add_subparsers(dest="tokens_action", required=True)
    token_create = token_actions.add_parser("create", help="a new token for a user of the users file (printed once)")
    token_create.add_argument("user")
    token_create.add_argument("--label", help="what the token is for (shown in the list)")
    token_create.add_argument("--by", help="who creates it (stored with it; default: the user)")
    token_list = token_actions.add_parser("list", help="tokens with their user, label, last use and state")
    token_list.add_argument("--user", help="only this user's tokens")
    token_list.add_argument("--json", action="store_true")
    token_revoke = token_actions.add_parser("revoke", help="revoke a token (refused at once from then on)")
    token_revoke.add_argument("token_id", type=int)
    token_revoke.add_argument("--by", help="who revokes it (stored with it)")
    for sub in (token_create, token_list, token_revoke):
        db_argument(sub)

    backup = commands.add_parser("backup", help="a consistent copy of the database (stop the app first)")
    db_argument(backup)
    backup.add_argument("--out", required=True, help="the backup file to write (must not exist)")
    backup.add_argument("--force", action="store_true", help="overwrite an existing backup file")

    restore = commands.add_parser("restore", help="replace the database with a backup (checks its schema version)")
    restore.add_argument("backup", help="a file written by `backup`")
    db_argument(restore)
    restore.add_argument("--force", action="store_true", help="overwrite a database that holds data")



def _password(args: argparse.Namespace) -> str | None:
    if args.no_password:
        return None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise UsageError("no terminal to ask for the password: pass --password-stdin (or --no-password)")
        password = getpass.getpass(f"Password for {args.name}: ")
        if getpass.getpass("Again: ") != password:
            raise UsageError("the two passwords differ; nothing was changed")
    return password


def run(args: argparse.Namespace) -> int:
    from curation import store

    if args.command == "users":
        from curation.admin import users

        path = Path(args.users_file) if args.users_file else users.users_file_path(args.db)
        if args.users_action == "add":
            user = users.add_user(path, args.name, role=args.role, password=_password(args), email=args.email,
                                  replace=args.replace)
            print(f"{user.name}: {user.role} ({'password' if user.has_password else 'identity provider only'}) "
                  f"in {path}")
        elif args.users_action == "remove":
            users.remove_user(path, args.name)
            print(f"removed {args.name} from {path}")
        elif args.users_action == "set-role":
            user = users.set_role(path, args.name, args.role)
            print(f"{user.name}: {user.role}")
        else:
            listed = users.list_users(path)
            if args.json:
                print(json.dumps([{"name": u.name, "role": u.role, "email": u.email, "password": u.has_password}
                                  for u in listed]))
            for user in listed if not args.json else ():
                print(f"{user.name}\t{user.role}\t{user.email or ''}\t"
                      f"{'password' if user.has_password else 'identity provider'}")
        return 0
    if args.command == "tokens":
        return _tokens(args)
    if args.command == "backup":
        from curation.admin.backup import backup_database

        con = store.connect(args.db)
        try:
            summary = backup_database(con, Path(args.out), force=args.force)
        finally:
            con.close()
        print(json.dumps(summary.as_dict()))
        return 0
    from curation.admin.backup import restore_database  # restore

    summary = restore_database(Path(args.backup), store.resolve_db_path(args.db), force=args.force)
    print(json.dumps(summary.as_dict()))
    return 0


def _tokens(args: argparse.Namespace) -> int:
    from curation import store
    from curation.admin import tokens
    from curation.admin.users import users_file_path

    con = store.connect(args.db)
    try:
        if args.tokens_action == "create":
            secret, record = tokens.create_token(con, users_file_path(args.db), args.user, label=args.label,
                                                 by=args.by)
            print(f"token #{record.token_id} for {record.user_name}: {secret}")
            print("shown once: store it now (UTS_TOKEN, or Client(token=...)); revoke it with "
                  f"`python -m curation tokens revoke {record.token_id}`")
        elif args.tokens_action == "list":
            listed = [t.as_dict() for t in tokens.list_tokens(con, args.user)]
            if args.json:
                print(json.dumps(listed))
            for t in listed if not args.json else ():
                print(f"#{t['token_id']}\t{t['user']}\t{t['prefix']}...\t{t['label'] or ''}\t"
                      f"last used {t['last_used_at'] or 'never'}\t"
                      f"{'active' if t['active'] else 'revoked ' + t['revoked_at']}")
        else:
            record = tokens.revoke_token(con, args.token_id, by=args.by)
            print(f"token #{record.token_id} of {record.user_name} revoked")
    finally:
        con.close()
    return 0
