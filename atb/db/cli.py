"""`atb db upgrade|current|replay|records` and `atb tests heartbeat`.

The database URL is, in order: `--db-url URL`; else `db.url` of the composed Hydra config
(the same `conf/` a run uses, so `ATB_DB_URL` and, with `db=postgres`, `DATABASE_URL` are
honoured there); extra `key=value` / `group=option` arguments are Hydra overrides, e.g.
`atb db upgrade db=postgres db.url=postgresql+psycopg://...`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from atb.db.errors import DatabaseError, RecordLogError

HEARTBEAT_DEFAULT_COMPONENT = "scheduler"


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--db-url", help="database URL (default: db.url of the configured run)")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides, e.g. db=postgres db.url=postgresql+psycopg://...",
    )
    return parser


def load_db_settings(
    db_url: str | None, overrides: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(db node settings, journal node settings) from the composed config, URL overridden."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from atb.__main__ import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    db = OmegaConf.to_container(cfg.db, resolve=True) if "db" in cfg else {}
    journal = OmegaConf.to_container(cfg.journal, resolve=True) if "journal" in cfg else {}
    assert isinstance(db, dict) and isinstance(journal, dict)
    db_settings: dict[str, Any] = {str(k): v for k, v in db.items()}
    journal_settings: dict[str, Any] = {str(k): v for k, v in journal.items()}
    if db_url:
        db_settings["url"] = db_url
    db_settings["_target_"] = "atb.db.node.Database"
    journal_settings["_target_"] = "atb.db.journal.Journal"
    return db_settings, journal_settings


def _open_database(settings: dict[str, Any], auto_migrate: bool | None = None) -> Any:
    from atb.db.node import Database, DatabaseConfig
    from atb.runtime.context import RunContext

    if auto_migrate is not None:
        settings = {**settings, "auto_migrate": auto_migrate}
    config = DatabaseConfig.model_validate({**settings, "needs": []})
    return Database(config, RunContext(mode="cli"))


def _say(text: str, fallback: str) -> None:
    try:
        print(text)
    except UnicodeEncodeError:  # a terminal that cannot show the emoji
        print(fallback + text[1:])


# -- atb db ----------------------------------------------------------------------------


def db_command(argv: list[str]) -> int:
    from atb.db.migrate import check_schema, schema_state, upgrade
    from atb.db.node import connect_check
    from atb.db.startup import check_not_foreign, check_sqlite_file

    actions = ("upgrade", "current", "replay", "records", "revision")
    if argv[0] == "revision":
        return _revision(argv[1:])
    if argv[0] not in actions:
        print(
            f"atb db: unknown action '{argv[0]}' (choose from {', '.join(actions)})",
            file=sys.stderr,
        )
        return 2
    parser = _parser(f"atb db {argv[0]}", "Database migrations.")
    parser.add_argument(
        "--spill-file",
        help="replay: the journal spill file to load (default: this database's own spill file)",
    )
    parser.add_argument(
        "--file",
        action="append",
        default=[],
        help="records: a record log (records-<run_id>.jsonl) to apply; repeatable",
    )
    parser.add_argument(
        "--dir",
        help="records: apply every record log in DIR (default: this database's own)",
    )
    parser.add_argument(
        "--adopt",
        action="store_true",
        help="upgrade: add atb's tables to a database that holds another application's",
    )
    args, rest = parser.parse_known_args(argv[1:])
    args.action = argv[0]
    overrides = [*args.overrides, *rest]
    db = None
    try:
        db_settings, journal_settings = load_db_settings(args.db_url, overrides)
        db = _open_database(db_settings, auto_migrate=False)
        adopt = bool(args.adopt and args.action == "upgrade")
        # before connect_check: its connection would switch a SQLite file to WAL
        check_sqlite_file(db.engine, quick_check=True, adopt=adopt)
        connect_check(db.engine)
        check_not_foreign(db.engine, adopt=adopt)
        where = db.redacted_url
        state = schema_state(db.engine)
        if args.action == "current":
            note = {
                "current": "(head)",
                "fresh": "(empty database: run `atb db upgrade`)",
                "behind": f"(code expects {state.head}: run `atb db upgrade`)",
                "ahead": f"(newer than this atb, which expects {state.head})",
                "unversioned": "(atb tables without migration history)",
            }[state.status]
            print(f"{where}: {state.current or 'no revision'} {note}")
            return 0
        if args.action == "upgrade":
            if state.status == "current":
                print(f"{where}: already at {state.head} (head)")
                return 0
            if state.status in ("ahead", "unversioned"):
                check_schema(db.engine, auto_migrate=False)  # raises with the explanation
            upgrade(db.engine)
            was = state.current or (
                "another application's tables only" if adopt else "empty database"
            )
            print(f"{where}: upgraded {was} -> {state.head}")
            return 0
        if args.action == "records":
            return _records(db, args.file, args.dir)
        auto_migrate = bool(db_settings.get("auto_migrate", True))
        return _replay(db, journal_settings, args.spill_file, auto_migrate)
    except (DatabaseError, RecordLogError) as exc:
        print(f"atb db: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # Hydra composition, validation: one line, no traceback
        from atb.logging.redaction import redact_text

        print(f"atb db: error: {type(exc).__name__}: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    finally:
        if db is not None:
            db.stop()


def _revision(argv: list[str]) -> int:
    """For developers: autogenerate a migration for model changes (`-m "what changed"`).

    Compares the models with a scratch SQLite database migrated to head, so no server
    is needed; review the generated file (SQLite/PostgreSQL differences) before committing.
    """
    import tempfile
    from pathlib import Path

    from alembic import command as alembic_command
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    from atb.db.migrate import alembic_config, upgrade
    from atb.db.models import Base

    parser = argparse.ArgumentParser(prog="atb db revision")
    parser.add_argument("-m", "--message", required=True)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/scratch.db"
        engine = create_engine(url)
        upgrade(engine)
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            changes = compare_metadata(ctx, Base.metadata)
        engine.dispose()
        if not changes:
            print("the models match the migrations: no revision needed")
            return 0
        script = alembic_command.revision(
            alembic_config(url=url), message=args.message, autogenerate=True
        )
    path = Path(str(getattr(script, "path", "")))
    if path.is_file():
        # Alembic renders JSONB's astext_type without the `sa.` its imports need.
        path.write_text(path.read_text().replace("astext_type=Text()", "astext_type=sa.Text()"))
    revision = getattr(script, "revision", "?")
    print(
        f"wrote {path} ({len(changes)} changes): review it, set HEAD_REVISION = "
        f"{revision!r} in atb/db/migrations/__init__.py (start-up trusts it), then commit"
    )
    return 0


def _replay(
    db: Any, journal_settings: dict[str, Any], spill_file: str | None, auto_migrate: bool
) -> int:
    """Load a spill file left by a run that could not replay it (e.g. a PostgreSQL run's
    file in its own output dir) into the database; idempotent."""
    from atb.db.journal import Journal, JournalConfig
    from atb.db.migrate import check_schema

    check_schema(db.engine, auto_migrate=auto_migrate)
    settings = {**journal_settings, "listen": False, "needs": []}
    if spill_file:
        settings["spill_path"] = spill_file
    journal = Journal(JournalConfig.model_validate(settings), db.ctx, db=db)
    pending = journal.spill_pending
    journal.start()
    journal.flush(timeout=60)
    deadline = time.monotonic() + 60
    while journal.spill_pending and journal.db_available and time.monotonic() < deadline:
        time.sleep(0.05)
    journal.stop()
    state = journal.state()
    print(
        f"{db.redacted_url}: replayed {state['replayed']} of {pending} spilled events from "
        f"{journal.spill_path}; {state['spill_pending']} still pending"
    )
    return 0 if state["spill_pending"] == 0 else 1


def _records(db: Any, files: list[str], directory: str | None) -> int:
    """Apply paper/live record logs a session left behind, without starting one.

    Each op is applied at most once (runs.metrics.records_seq), so running this twice, or
    before a session that would replay the same file, stores every row once.
    """
    from pathlib import Path

    from atb.db.migrate import check_schema
    from atb.db.record_ops import apply_file
    from atb.db.url import default_record_log_dir

    check_schema(db.engine, auto_migrate=False)
    where = db.redacted_url
    if files:
        paths = [Path(f).expanduser() for f in files]
    else:
        folder = Path(directory).expanduser() if directory else default_record_log_dir(db.url)
        if directory and not folder.is_dir():
            raise RecordLogError(f"{folder}: no such directory")
        paths = sorted(folder.glob("records-*.jsonl")) if folder.is_dir() else []
        if not paths:
            print(f"{where}: no record logs in {folder}: nothing to apply")
            return 0
    for path in paths:
        result = apply_file(db.engine, path, strict=True)
        already = result.ops - result.applied
        print(
            f"{where}: applied {result.applied} of {result.ops} op(s) of run "
            f"{', '.join(result.runs) or '-'} from {path}"
            + (f" ({already} already stored)" if already else "")
        )
    return 0


# -- atb tests heartbeat ---------------------------------------------------------------


def heartbeat(argv: list[str]) -> int:
    """Emit a TEST SystemEvent through the journal and read it back from the database."""
    from sqlalchemy import select

    from atb.db.journal import Journal, JournalConfig
    from atb.db.models import SystemEvent

    parser = _parser("atb tests heartbeat", "Round-trip a heartbeat event through the journal.")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (10)")
    args, rest = parser.parse_known_args(argv)
    component = os.environ.get("HEARTBEAT_COMPONENT") or HEARTBEAT_DEFAULT_COMPONENT
    db = None
    journal = None
    try:
        db_settings, journal_settings = load_db_settings(args.db_url, [*args.overrides, *rest])
        db = _open_database(db_settings)
        db.start()
        journal = Journal(
            JournalConfig.model_validate({**journal_settings, "listen": False, "needs": []}),
            db.ctx,
            db=db,
        )
        journal.start()
        t0 = time.perf_counter()
        event_id = journal.emit(
            {
                "event_type": "TEST",
                "severity": "INFO",
                "message": "Heartbeat",
                "component": component,
                "logger": "atb.tests.heartbeat",
                "details": {"source": "atb tests heartbeat", "pid": os.getpid()},
            }
        )
        deadline = time.monotonic() + args.timeout
        query = select(SystemEvent.id).where(SystemEvent.event_uuid == event_id)
        found = None
        while found is None and time.monotonic() < deadline:
            journal.flush(timeout=0.05)
            with db.engine.connect() as conn:
                found = conn.execute(query).scalar()
            if found is None:
                time.sleep(0.01)
        elapsed_ms = (time.perf_counter() - t0) * 1000
        if found is None:
            reason = journal.state()["last_error"] or "not in system_events"
            _say(
                f"❌ Heartbeat not recorded within {args.timeout:g}s in {db.redacted_url}: "
                f"{reason}",
                "FAIL",
            )
            return 1
        _say(
            f"✅ Heartbeat recorded in {db.redacted_url}: round trip {elapsed_ms:.1f} ms "
            f"(SystemEvent TEST, component={component}, id={event_id})",
            "OK",
        )
        return 0
    except Exception as exc:
        from atb.logging.redaction import redact_text

        _say(f"❌ Heartbeat failed: {redact_text(str(exc))}", "FAIL")
        return 1
    finally:
        if journal is not None:
            journal.stop()
        if db is not None:
            db.stop()


def command(name: str, argv: list[str]) -> int:
    """Entry point used by atb.cli for `atb db ...` and `atb tests ...`."""
    if name == "db":
        if not argv or argv[0] in ("-h", "--help"):
            print(
                "usage: atb db {upgrade,current,replay,records} [--db-url URL] [overrides ...]\n"
                "       atb db revision -m MESSAGE\n\n"
                "  upgrade   migrate the database to the schema this atb expects\n"
                "  current   show the database's revision and whether it is up to date\n"
                "  replay    load a journal spill file into the database (--spill-file PATH)\n"
                "  records   apply paper/live record logs a session left behind, exactly once\n"
                "            (--file PATH ..., or --dir DIR; default: this database's own)\n"
                "  revision  (developers) autogenerate a migration for model changes"
            )
            return 0 if argv else 2
        return db_command(argv)
    if name == "tests":
        if not argv or argv[0] in ("-h", "--help"):
            print(
                "usage: atb tests heartbeat [--db-url URL] [--timeout S] [overrides ...]\n\n"
                "  heartbeat  emit a TEST SystemEvent through the journal and read it back\n"
                "             (component from HEARTBEAT_COMPONENT, default 'scheduler')"
            )
            return 0 if argv else 2
        if argv[0] != "heartbeat":
            print(f"atb tests: unknown test '{argv[0]}' (available: heartbeat)", file=sys.stderr)
            return 2
        return heartbeat(argv[1:])
    print(f"atb: atb.db.cli has no command '{name}'", file=sys.stderr)
    return 2
