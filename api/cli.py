"""The `flagshare` command: serve, worker, db upgrade and backup, users add, agencies add,
keys rotate and passphrase, audit verify."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pydantic import ValidationError
from sqlmodel import Session, select

from api.logs import configure as configure_logging
from api.policy.loader import PolicyError, load_policy
from api.settings import Settings, UnknownSettings, settings_from_environment


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "offline", False):  # no configuration, no database, no policy
        return args.handler(args)
    if getattr(args, "demo", False):
        os.environ["FLAGSHARE_ENVIRONMENT"] = "development"
    try:
        settings = settings_from_environment()
        policy = load_policy(settings.policy_dir)
    except UnknownSettings as exc:
        return _fail(f"unknown configuration:\n{exc}")
    except ValidationError as exc:
        return _fail("invalid configuration:\n" + "\n".join(
            f"  FLAGSHARE_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()))
    except PolicyError as exc:
        return _fail(f"invalid policy:\n{exc}")
    return args.handler(args, settings, policy)


def _fail(message: str, code: int = 2) -> int:
    print(f"flagshare: {message}", file=sys.stderr)
    return code


def _serve(args, settings: Settings, policy) -> int:
    import uvicorn

    from api.auth.keys import SigningKeyError
    from api.forwarding.sealing import ensure_sealed
    from api.main import create_app
    from api.migrate import upgrade

    configure_logging(settings.effective_log_format)
    upgrade(settings.database_url)
    app = create_app(settings)
    try:
        app.state.keyring.ensure_signing_key()
        ensure_sealed(app.state.session_factory, settings.signing_key_passphrase)
    except SigningKeyError as exc:
        return _fail(str(exc))
    if args.demo:
        from api.demo import load_demo

        with _session(settings) as session:
            print(load_demo(session, policy, base_url=f"http://{args.host}:{args.port}"),
                  flush=True)  # before the server's own lines, in a container's log too
    # uvicorn's own logging set-up would replace ours; its access log would print query
    # strings (personal data): api.logs writes the access log instead.
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False,
                log_config=None)
    return 0


def _worker(args, settings: Settings, policy) -> int:
    import signal
    import threading

    from api.auth.keys import KeyRing, SigningKeyError
    from api.db import make_engine
    from api.forwarding.sealing import ensure_sealed
    from api.forwarding.worker import DeliveryWorker
    from api.migrate import upgrade

    configure_logging(settings.effective_log_format)
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)

    def session_factory() -> Session:
        return Session(engine, expire_on_commit=False)

    try:  # the worker signs checkpoints and webhooks: find out now, not at the first one
        KeyRing(settings, session_factory).ensure_signing_key()
        ensure_sealed(session_factory, settings.signing_key_passphrase)
    except SigningKeyError as exc:
        return _fail(str(exc))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger("flagshare.worker").info(
        "delivering webhooks, chasing acknowledgements, sweeping transfer deadlines")
    DeliveryWorker(session_factory, settings, policy=policy).run(stop)
    return 0


def _db_upgrade(args, settings: Settings, policy) -> int:
    from api.migrate import upgrade

    upgrade(settings.database_url)
    print("database is at the latest schema")
    return 0


def _users_add(args, settings: Settings, policy) -> int:
    from api.agencies.models import Agency
    from api.auth.models import User
    from api.auth.passwords import hash_secret
    from api.auth.principal import PERSON_ROLES

    if args.role not in PERSON_ROLES:
        return _fail(f"--role must be one of {', '.join(PERSON_ROLES)} (an agency system "
                     "signs in with the client secret of `flagshare agencies add`)", 1)
    if args.role == "mash_practitioner" and not args.agency:
        return _fail(f"--agency is required for {args.role}", 1)
    if len(args.password) < 12:
        return _fail("--password must be at least 12 characters", 1)
    password_hash = hash_secret(args.password)  # before the transaction (see NewSecret)
    with _session(settings) as session:
        if args.agency and session.get(Agency, args.agency) is None:
            return _fail(f"no registered agency {args.agency}", 1)
        if session.exec(select(User).where(User.username == args.username)).first():
            return _fail(f"user {args.username} already exists", 1)
        session.add(User(username=args.username, password_hash=password_hash,
                         role=args.role, agency_id=args.agency))
        session.commit()
    print(f"added {args.role} {args.username}")
    return 0


def _agencies_add(args, settings: Settings, policy) -> int:
    from api.agencies.schemas import AgencyCreate
    from api.agencies.service import register
    from api.audit import service as audit
    from api.auth.passwords import new_secret
    from api.problems import ProblemError

    try:
        body = AgencyCreate(id=args.id, name=args.name, kind=args.kind, area=args.area)
    except ValidationError as exc:
        return _fail("; ".join(f"--{e['loc'][0]}: {e['msg']}" for e in exc.errors()), 1)
    secret = new_secret()  # hashed before the transaction begins (see NewSecret)
    with _session(settings) as session:
        try:
            agency = register(session, policy, body, secret)
        except ProblemError as exc:
            return _fail(exc.detail, 1)
        audit.record(session, actor="cli", action="agency.register", outcome="registered",
                     recipient=agency.id)
        session.commit()
    print(f"registered {agency.id} ({agency.kind}, {agency.area})")
    print(f"client_secret: {secret.plain}")
    return 0


def _set_disabled(args, settings: Settings, policy) -> int:
    """`users` or `agencies` `disable`/`enable`: one audited change."""
    from api.problems import ProblemError

    if args.what == "user":
        from api.auth.service import set_person_disabled as change
    else:
        from api.agencies.service import set_disabled as change
    with _session(settings) as session:
        try:
            change(session, args.name, args.disabled, actor="cli", reason=args.reason)
        except ProblemError:
            return _fail(f"no {args.what} {args.name}", 1)
        session.commit()
    print(f"{'disabled' if args.disabled else 'enabled'} {args.name}")
    return 0


def _reason(text: str) -> str:
    """--reason: what the audit log keeps of why (required, not blank)."""
    if not text.strip() or len(text) > 1000:
        raise argparse.ArgumentTypeError("give a reason of 1 to 1000 characters")
    return text


def _keys_rotate(args, settings: Settings, policy) -> int:
    """A new token signing key; the old one is published until its tokens have expired."""
    from api.auth.keys import KeyRing, SigningKeyError
    from api.db import make_engine
    from api.migrate import upgrade

    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    keyring = KeyRing(settings, lambda: Session(engine, expire_on_commit=False))
    try:
        key = keyring.rotate()
    except SigningKeyError as exc:
        return _fail(str(exc))
    print(f"signing with new key {key.kid}; running processes switch within "
          f"{keyring.reload_seconds:.0f} s")
    print(f"retired keys stay in /.well-known/jwks.json for "
          f"{keyring.publication_horizon.total_seconds():.0f} s, and in /v1/audit/keys for good")
    return 0


def _keys_passphrase(args, settings: Settings, policy) -> int:
    """Re-encrypt the signing keys and webhook secrets under a new passphrase, in one
    transaction: every one of them, or (a wrong current passphrase) none."""
    from pathlib import Path

    from api.audit import service as audit
    from api.auth.keys import SigningKeyError, reseal_signing_keys
    from api.forwarding.sealing import reseal_stored_secrets
    from api.settings import read_secret

    try:
        new = read_secret(Path(args.new_file)).encode()
    except ValueError as exc:
        return _fail(f"--new-file: {exc}", 1)
    if new == settings.signing_key_passphrase:
        return _fail("--new-file: that is the passphrase in use already", 1)
    with _session(settings) as session:
        try:
            keys = reseal_signing_keys(session, settings.signing_key_passphrase, new)
            secrets = reseal_stored_secrets(session, settings.signing_key_passphrase, new)
        except SigningKeyError as exc:
            return _fail(str(exc))
        audit.record(session, actor="cli", action="keys.passphrase", outcome="changed")
        session.commit()
    print(f"re-encrypted {keys} signing key(s) and {secrets} webhook secret(s) under the new "
          "passphrase")
    print("point FLAGSHARE_SIGNING_KEY_PASSPHRASE_FILE at the new file and restart every "
          "process; keep the old passphrase as long as backups made before now are kept")
    return 0


def _audit_verify(args) -> int:
    """Verify an export offline: 0 intact, 1 tampered (first bad seq printed), 2 unusable input."""
    import json
    from pathlib import Path

    from api.audit.verify import Checkpoint, ExportUnreadable, keys_from_jwks, verify_export

    try:
        keys = keys_from_jwks(json.loads(Path(args.jwks).read_text())) if args.jwks else None
        held = []
        for path in args.checkpoint:
            data = json.loads(Path(path).read_text())
            held.append(Checkpoint.parse(data.get("checkpoint", data)
                                         if isinstance(data, dict) else data))
        report = verify_export(Path(args.file), keys, held)
    except (OSError, ValueError, ExportUnreadable) as exc:
        return _fail(str(exc))
    print(f"events checked: {report.events_checked}")
    print(f"head: seq {report.head_seq}, hash {report.head}")
    signatures = (f"{report.signatures_checked} signature(s) checked" if keys is not None
                  else "signatures NOT checked (pass --jwks FILE)")
    print(f"checkpoints: {report.checkpoints_checked}, {signatures}")
    if cp := report.latest_checkpoint:
        print(f"latest checkpoint: seq {cp.seq} signed at {cp.at} (kid {cp.kid}); the chain "
              f"{'passes through it' if report.head_matches_checkpoint else 'does NOT match it'}")
    if report.ok:
        print("OK: the log is intact")
        return 0
    _print_tampered(report)
    return 1


def _print_tampered(report) -> None:
    first = report.first_bad_seq
    print(f"TAMPERED: first bad seq {first}" if first is not None else "TAMPERED")
    for finding in report.findings:
        print(f"  {'seq ' + str(finding.seq) if finding.seq is not None else '-'}: "
              f"{finding.problem}")


def _db_backup(args, settings: Settings, policy) -> int:
    """A consistent copy of the embedded database, checked: 0 good, 1 not taken or its audit
    log does not verify (the copy is then kept, and what is wrong printed)."""
    from pathlib import Path

    from api.backup import BackupError, take

    try:
        backup = take(settings.database_url, Path(args.path))
    except BackupError as exc:
        return _fail(str(exc), 1)
    log = backup.log
    print(f"backup: {backup.path} ({backup.size:,} bytes); SQLite finds the copy whole")
    print(f"audit log in the copy: {log.events_checked} events to seq {log.head_seq}, "
          f"{log.checkpoints_checked} checkpoint(s), {log.signatures_checked} signature(s) "
          "checked")
    if log.ok:
        print("OK: a good backup")
        return 0
    print("The copy is kept, as what the database holds, but its audit log does NOT verify:")
    _print_tampered(log)
    return 1


def _session(settings: Settings) -> Session:
    from api.db import make_engine
    from api.migrate import upgrade

    upgrade(settings.database_url)
    return Session(make_engine(settings.database_url), expire_on_commit=False)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flagshare", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the API (and, embedded, the delivery worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--demo", action="store_true",
                       help="load demo agencies, people and flags (implies development)")
    serve.set_defaults(handler=_serve)

    worker = sub.add_parser("worker", help="delivery worker and sweeper only (scale-out)")
    worker.set_defaults(handler=_worker)

    db = sub.add_parser("db", help="the database: schema and backups").add_subparsers(
        required=True, metavar="ACTION")
    db.add_parser("upgrade", help="apply migrations").set_defaults(handler=_db_upgrade)
    backup = db.add_parser("backup", help="a consistent, checked copy of the embedded SQLite "
                                          "database, taken while the service runs")
    backup.add_argument("path", metavar="PATH", help="the new file (must not exist)")
    backup.set_defaults(handler=_db_backup)

    users = sub.add_parser("users", help="people held by the service").add_subparsers(
        required=True, metavar="ACTION")
    add_user = users.add_parser("add", help="add a person")
    add_user.add_argument("--username", required=True)
    add_user.add_argument("--password", required=True)
    add_user.add_argument("--role", required=True)
    add_user.add_argument("--agency")
    add_user.set_defaults(handler=_users_add)
    for action, disabled, what in (("disable", True, "refuse a person's tokens and sessions "
                                    "at once (a leaver)"), ("enable", False, "let them in again")):
        change = users.add_parser(action, help=what)
        change.add_argument("name", metavar="USERNAME")
        change.add_argument("--reason", required=True, type=_reason, help="for the audit log")
        change.set_defaults(handler=_set_disabled, what="user", disabled=disabled)

    agencies = sub.add_parser("agencies", help="agency systems").add_subparsers(
        required=True, metavar="ACTION")
    add_agency = agencies.add_parser("add", help="register an agency; prints its client secret")
    for name in ("id", "name", "kind", "area"):
        add_agency.add_argument(f"--{name}", required=True)
    add_agency.set_defaults(handler=_agencies_add)
    for action, disabled, what in (("disable", True, "refuse its tokens and its "
                                    "practitioners', share nothing more with it"),
                                   ("enable", False, "let it in again")):
        change = agencies.add_parser(action, help=what)
        change.add_argument("name", metavar="ID")
        change.add_argument("--reason", required=True, type=_reason, help="for the audit log")
        change.set_defaults(handler=_set_disabled, what="agency", disabled=disabled)

    keys = sub.add_parser("keys", help="token signing keys and their passphrase").add_subparsers(
        required=True, metavar="ACTION")
    keys.add_parser("rotate", help="sign with a new key from now on").set_defaults(
        handler=_keys_rotate)
    passphrase = keys.add_parser(
        "passphrase", help="re-encrypt the signing keys and webhook secrets under a new "
                           "passphrase (stop the service and workers first)")
    passphrase.add_argument("--new-file", required=True, metavar="FILE",
                            help="the file holding the new passphrase")
    passphrase.set_defaults(handler=_keys_passphrase)

    audit = sub.add_parser("audit", help="the sharing log").add_subparsers(
        required=True, metavar="ACTION")
    verify = audit.add_parser("verify", help="verify an exported log (JSON lines) offline")
    verify.add_argument("file", metavar="FILE", help="from GET /v1/audit/export")
    verify.add_argument("--jwks", metavar="FILE",
                        help="the service's public keys (/.well-known/jwks.json), to check "
                             "checkpoint signatures")
    verify.add_argument("--checkpoint", metavar="FILE", action="append", default=[],
                        help="a checkpoint kept from earlier (GET /v1/audit/checkpoints/latest) "
                             "to hold the log to; repeatable")
    verify.set_defaults(handler=_audit_verify, offline=True)
    return parser


if __name__ == "__main__":
    sys.exit(main())
