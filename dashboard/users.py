"""``python -m dashboard.users add NAME [--role clinician|admin]``: create or reset an account.

The password is read without echo (or from NEUROSCAN_NEW_PASSWORD for scripts) and only its
salted hash is written to the accounts file named in the settings.
"""

import argparse
import getpass
import os

from dashboard.auth import ROLES, AccountStore
from dashboard.settings import load_settings

PASSWORD_ENV = "NEUROSCAN_NEW_PASSWORD"


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the command."""
    parser = argparse.ArgumentParser(prog="python -m dashboard.users", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="create an account or set a new password")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, default="clinician")
    args = parser.parse_args(argv)
    password = os.environ.get(PASSWORD_ENV) or _ask_password()
    store = AccountStore(load_settings().accounts_file)
    try:
        account = store.add(args.username, password, args.role)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    print(f"Account '{account.username}' ({account.role}) saved to {store.path}")


def _ask_password() -> str:
    first, second = getpass.getpass("Password: "), getpass.getpass("Again: ")
    if first != second:
        raise SystemExit("The passwords differ.")
    return first


if __name__ == "__main__":
    main()
