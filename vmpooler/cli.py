"""The whole command line: ``vmpooler serve | check-config | db upgrade | backup | copy | import-redis | passwd | history``."""
from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from typing import Optional

from vmpooler import __version__
from vmpooler import config as config_module
from vmpooler.logs import LOG_FORMATS, LOG_LEVELS, setup_logging
from vmpooler.providers.registry import REGISTRY


def _load(path):
    """The configuration, or exit 2 with every problem listed (each names its key)."""
    try:
        return config_module.load(path, os.environ, REGISTRY)
    except config_module.ConfigError as error:
        print(f"vmpooler: {error}", file=sys.stderr)
        sys.exit(2)


def cmd_serve(args) -> int:
    from vmpooler.app import CannotStart, ListenError, serve

    config = _load(args.config)
    try:
        asyncio.run(serve(config, args.host, args.port, args.role))
    except ListenError as error:  # logged, so that it follows the lines logged before it
        logging.getLogger("vmpooler").error("%s", error)
        return 1
    except CannotStart as error:  # one line saying what and where; a traceback would bury it
        print(f"vmpooler: cannot start: {error}", file=sys.stderr)
        return 1
    return 0


def cmd_check_config(args) -> int:
    """Every problem and every warning; exit 1 on a problem, and with ``--strict`` on a warning."""
    try:
        raw = config_module.read_file(args.file)
        config = config_module.build(raw, os.environ, REGISTRY)
    except config_module.ConfigError as error:
        _print_findings(error.problems, error.warnings)
        print(f"{args.file}: {len(error.problems)} problem(s), {len(error.warnings)} warning(s)")
        return 1
    _print_findings([], config.warnings)
    for note in config.notes:
        print(f"note: {note}")
    if args.strict and config.warnings:
        print(f"{args.file}: {len(config.warnings)} warning(s), which --strict makes a failure")
        return 1
    print(f"{args.file}: OK ({len(config.pools)} pools, {len(config.providers)} providers"
          + (f", {len(config.warnings)} warning(s))" if config.warnings else ")"))
    return 0


def _print_findings(problems, warnings) -> None:
    for problem in problems:
        print(f"error: {problem}")
    for warning in warnings:
        print(f"warning: {warning}")


def cmd_db_upgrade(args) -> int:
    from vmpooler.db.database import Database, StoreUnavailable
    from vmpooler.db.schema import SchemaTooNew, UpgradeFailed

    config = _load(args.config)
    try:
        report = Database(config.database_url).upgrade()
    except (StoreUnavailable, SchemaTooNew, UpgradeFailed) as error:
        print(f"vmpooler: {error}", file=sys.stderr)
        return 1
    if report.backup:
        print(f"database backed up before the upgrade to {report.backup}")
    if report.before != report.after:
        print(f"database schema upgraded from {report.before or 'nothing'} to {report.after}")
    print("database schema is up to date")
    return 0


def cmd_db_copy(args) -> int:
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    from vmpooler.db.copy import CopyRefused, copy_database
    from vmpooler.db.database import Database, StoreUnavailable

    config = _load(args.config)
    try:
        target = Database(args.to)
    except (ArgumentError, NoSuchModuleError) as error:
        print(f"vmpooler: --to must be an SQLAlchemy URL such as postgresql://user:pw@host/db: {error}",
              file=sys.stderr)
        return 2
    source = Database(config.database_url)
    try:
        copied = copy_database(source, target)
    except (CopyRefused, StoreUnavailable) as error:
        print(f"vmpooler: nothing copied: {error}", file=sys.stderr)
        return 1
    except SQLAlchemyError as error:  # the target cannot be reached or written
        print(f"vmpooler: nothing copied: {getattr(error, 'orig', None) or error}", file=sys.stderr)
        return 1
    finally:
        source.dispose()
        target.dispose()
    for table in copied:
        print(f"{table.table}: {table.rows} rows")
    print("copied; every table's count matches the source")
    return 0


def cmd_db_backup(args) -> int:
    from vmpooler.operations import backup_command

    return backup_command(_load(args.config), args.file, sys.stdout, sys.stderr)


def cmd_db_import_redis(args) -> int:
    from vmpooler.operations import import_redis_command

    return import_redis_command(_load(args.config), args.url, sys.stdout, sys.stderr)


def cmd_dlq(args) -> int:
    from vmpooler.operations import dlq_command

    return dlq_command(_load(args.config), args.pool, args.limit, sys.stdout, sys.stderr)


def cmd_history(args) -> int:
    from vmpooler.operations import history_command

    return history_command(_load(args.config), args.hostname, sys.stdout, sys.stderr)


def cmd_passwd(args) -> int:
    from vmpooler.auth import hash_password

    password = getpass.getpass("Password: ")
    if not password:
        print("vmpooler: an empty password is not allowed", file=sys.stderr)
        return 1
    if getpass.getpass("Again: ") != password:
        print("vmpooler: the passwords differ", file=sys.stderr)
        return 1
    try:
        digest = hash_password(password)
    except ValueError as error:  # longer than bcrypt reads
        print(f"vmpooler: {error}", file=sys.stderr)
        return 1
    print(f"{args.user}: '{digest}'" if args.user else digest)
    return 0


class _Version(argparse.Action):
    """``--version``: the package's version and the newest schema revision of its migrations
    (CHANGELOG.md lists both per release), read only when asked for."""

    def __call__(self, parser, namespace, values, option_string=None):
        from vmpooler.db.schema import scripts

        print(f"vmpooler-py {__version__} (schema {scripts().get_current_head()})")
        parser.exit()


def _command(commands, name: str, func, summary: str, description: str, positional: Optional[str] = None,
             config_help: Optional[str] = None) -> argparse.ArgumentParser:
    """A subcommand running ``func``, with an optional positional argument and --config."""
    command = commands.add_parser(name, help=summary, description=description)
    if positional:
        command.add_argument(positional.lower(), metavar=positional)
    if config_help:
        command.add_argument("--config", help=config_help)
    command.set_defaults(func=func)
    return command


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="vmpooler",
        description="Pools of ready virtual machines behind the vmpooler API v1, in one process.")
    top.add_argument("--version", action=_Version, nargs=0, help="print the version and the schema revision it "
                     "migrates to, then exit")
    top.add_argument("--log-level", default=os.environ.get("VMPOOLER_LOG_LEVEL", "INFO").upper(), type=str.upper,
                     choices=LOG_LEVELS,
                     help="DEBUG, INFO, WARNING or ERROR (default INFO, or $VMPOOLER_LOG_LEVEL)")
    top.add_argument("--log-format", default="text", choices=LOG_FORMATS,
                     help="text (default) or json: one JSON object per line with the same fields")
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    config_help = ("YAML configuration file (default: $VMPOOLER_CONFIG as YAML text, then "
                   "$VMPOOLER_CONFIG_FILE, then the built-in example pools on the dummy provider)")

    serve = _command(commands, "serve", cmd_serve, "run the API and the pool manager",
                     "Run the API and the pool manager until SIGTERM or SIGINT. The database schema is "
                     "upgraded on start.", config_help=config_help)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=4567, help="port to listen on (default 4567)")
    serve.add_argument("--role", choices=("all", "api", "manager"), default="all",
                       help="all (default): the API and the pool manager; api: the API only; manager: the pool "
                            "manager only, serving no API (with :prometheus:, only its metrics and /healthcheck "
                            "on --host/--port). With several processes on one database, one of those that "
                            "manage runs the manager at a time; the others stand by")
    check = _command(commands, "check-config", cmd_check_config, "validate a configuration file",
                     "List every problem and every warning in FILE (a misspelt key is told the key it may "
                     "mean) and exit 1 if there is any problem.", positional="FILE")
    check.add_argument("--strict", action="store_true",
                       help="exit 1 on a warning too (an unknown or misspelt key), e.g. in CI")

    database = commands.add_parser("db", help="database maintenance", description="Database maintenance.")
    database_commands = database.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    _command(database_commands, "upgrade", cmd_db_upgrade, "upgrade the schema to the newest version",
             "Apply the Alembic migrations the database lacks.", config_help=config_help)
    _command(database_commands, "backup", cmd_db_backup, "copy the SQLite database consistently while the service "
             "runs", "Copy the SQLite database to FILE with SQLite's online backup (a consistent snapshot; the "
             "service may keep running). FILE is replaced atomically. PostgreSQL: use pg_dump.",
             positional="FILE", config_help=config_help)

    copy = _command(database_commands, "copy", cmd_db_copy,
                    "copy every table into another, empty database (e.g. SQLite to PostgreSQL)",
                    "Copy every table of the configured database into the empty database at --to, check that "
                    "the counts match, and refuse a target that holds any data.", config_help=config_help)
    copy.add_argument("--to", required=True, metavar="URL", help="the target, e.g. postgresql://user:pw@host/db")

    _command(database_commands, "import-redis", cmd_db_import_redis,
             "import a running original vmpooler's Redis (0.18 to 3.x) into an empty database",
             "Read tokens (stored hashed), every VM in every queue with its checkout, lifetime, tags, token and "
             "snapshots, on-demand requests, run-time pool changes and duration samples from the original's Redis "
             "at URL (redis://[:password@]host:port/db) and write them into the configured database, which must "
             "be empty, in one transaction. Prints what it imported and what it skipped and why; a second run "
             "from the same URL does nothing.", positional="URL", config_help=config_help)
    dlq = _command(commands, "dlq", cmd_dlq, "list the dead-letter queue: the VMs that failed and why",
                   "Print the newest entries of the dead-letter queue (clone given up, pending timeout, ready VM "
                   "unreachable, purged): time, pool, VM, where it failed, the error, its retries.",
                   config_help=config_help)
    dlq.add_argument("--pool", help="only this pool's")
    dlq.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    _command(commands, "history", cmd_history, "print a VM's whole life from the audit trail",
             "Print every VM that had HOSTNAME: its checkout (user, token prefix, lifetime), tags, and every "
             "event with its time and reason.", positional="HOSTNAME", config_help=config_help)
    passwd = _command(commands, "passwd", cmd_passwd, "print a bcrypt hash for :auth: users",
                      "Read a password from the terminal and print its bcrypt hash, for the users auth store.")
    passwd.add_argument("--user", help="print a ready line 'USER: <hash>' for the config")
    return top


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.log_level not in LOG_LEVELS:  # a default from $VMPOOLER_LOG_LEVEL is not checked by argparse
        parser().error(f"$VMPOOLER_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {args.log_level!r}")
    setup_logging(args.log_level, args.log_format)
    if not getattr(args, "func", None):
        parser().print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
