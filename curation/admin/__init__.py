"""Who may do what, and keeping the data safe: users, roles and permissions, backups and restores."""
