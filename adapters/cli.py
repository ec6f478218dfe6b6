"""`flagshare-adapter`: push an agency's export, receive webhooks, or follow the feed.

    flagshare-adapter <gp|midwifery|police|social-care> push FILE [--dry-run]
    flagshare-adapter receive --secret whsec_... --out DIR [--host H] [--port P]
    flagshare-adapter follow-feed --out DIR [--once]

The connection comes from --api-url, --client-id and --client-secret, or FLAGSHARE_API_URL,
FLAGSHARE_CLIENT_ID and FLAGSHARE_CLIENT_SECRET. Exit status: 0 when every record was
accepted or unchanged, 1 when some were rejected (each reported with its row number and the
reason, and written to a file to fix and push again), 2 for a usage or connection error.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path

from standardwebhooks.webhooks import EmptyWebhookSecretError

from adapters import gp, midwifery, police, social_care
from adapters.client import ApiError, ApiUnavailable, FlagshareClient
from adapters.feed import follow
from adapters.inbox import Inbox
from adapters.push import RecordResult, mapped, push
from adapters.receiver import WebhookReceiver
from adapters.records import FlagPart, RecordError
from adapters.sources import Batch, SourceError
from adapters.state import State, StateError

KINDS = {"gp": gp.load, "midwifery": midwifery.load, "police": police.load,
         "social-care": social_care.load}


class UsageError(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.run(args)
    except (UsageError, SourceError, StateError, ApiUnavailable, ApiError) as exc:
        print(f"flagshare-adapter: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.command in ("receive", "follow-feed"):
            return 0  # how a long-running receiver is stopped
        print("flagshare-adapter: interrupted; push the file again to finish (nothing is "
              "sent twice)", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument("--api-url", default=os.environ.get("FLAGSHARE_API_URL"),
                            help="flagshare base URL (FLAGSHARE_API_URL)")
    connection.add_argument("--client-id", default=os.environ.get("FLAGSHARE_CLIENT_ID"),
                            help="the agency's id (FLAGSHARE_CLIENT_ID)")
    connection.add_argument("--client-secret",
                            default=os.environ.get("FLAGSHARE_CLIENT_SECRET"),
                            help="the agency's client secret (FLAGSHARE_CLIENT_SECRET)")
    parser = argparse.ArgumentParser(
        prog="flagshare-adapter", description="Send an agency's records to flagshare as "
        "flags, and take in what flagshare forwards to it.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for kind in KINDS:
        actions = commands.add_parser(kind, help=f"the {kind} adapter").add_subparsers(
            dest="action", required=True, metavar="ACTION")
        p = actions.add_parser("push", parents=[connection],
                               help="send the records in FILE (safe to re-run)")
        p.add_argument("file", type=Path)
        p.add_argument("--dry-run", action="store_true",
                       help="map and check only: print the requests, send nothing")
        p.add_argument("--state", type=Path, default=Path("flagshare-adapter-state.json"),
                       help="which flag each record became, so later closes find it")
        p.add_argument("--rejected", type=Path,
                       help="where to write rejected records (default: beside FILE)")
        p.set_defaults(run=_push, kind=kind)
    p = commands.add_parser("receive", parents=[connection],
                            help="run the webhook receiver")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--secret", default=os.environ.get("FLAGSHARE_WEBHOOK_SECRET"),
                   help="the subscription's whsec_ secret (FLAGSHARE_WEBHOOK_SECRET)")
    p.add_argument("--out", type=Path, required=True,
                   help="directory the agency system imports events from")
    p.set_defaults(run=_receive)
    p = commands.add_parser("follow-feed", parents=[connection],
                            help="take deliveries from the pull feed")
    p.add_argument("--out", type=Path, required=True,
                   help="directory the agency system imports events from")
    p.add_argument("--once", action="store_true", help="stop when the feed is drained")
    p.add_argument("--cursor", type=Path, help="cursor file (default: OUT/feed-cursor)")
    p.set_defaults(run=_follow)
    return parser


def _push(args) -> int:
    batch = KINDS[args.kind](args.file)
    if args.dry_run:
        return _dry_run(batch)
    state = State(args.state)
    progress = Progress(args.kind, len(batch.records))
    with _connect(args) as client:
        try:
            push(batch, client, state, progress.add)
        except ApiUnavailable as exc:
            progress.finish()
            _report(args, batch, progress.results)
            not_sent = len(batch.records) - len(progress.results)
            print(f"flagshare-adapter: stopped, {not_sent} records not sent: {exc}. Push the "
                  "file again when the API is back; what was sent is not sent twice.",
                  file=sys.stderr)
            return 2
    progress.finish()
    return _report(args, batch, progress.results)


def _dry_run(batch: Batch) -> int:
    rejected = 0
    for record, parts in mapped(batch):
        if isinstance(parts, RecordError):
            rejected += 1
            print(f"{batch.label} {record.number}: rejected: {parts}", file=sys.stderr)
            continue
        requests = [{"flag": asdict(p)} if isinstance(p, FlagPart) else
                    {"method": "POST", **asdict(p)} for p in parts]
        print(json.dumps({batch.label: record.number, "requests": requests}))
    print(f"dry run: {len(batch.records) - rejected} records would be sent, {rejected} "
          "rejected", file=sys.stderr)
    return 1 if rejected else 0


def _report(args, batch: Batch, results: list[RecordResult]) -> int:
    counts = {s: sum(r.status == s for r in results) for s in ("accepted", "unchanged",
                                                               "rejected")}
    for result in results:
        where = f"{batch.label} {result.record.number}"
        for reason in result.reasons:
            print(f"{where}: rejected: {reason}", file=sys.stderr)
        for warning in result.warnings:
            print(f"{where}: warning: {warning}", file=sys.stderr)
    print(f"{args.kind} push {args.file}: sent {counts['accepted']}, unchanged "
          f"{counts['unchanged']}, rejected {counts['rejected']}")
    rejected = [(r.record, " | ".join(r.reasons)) for r in results if r.status == "rejected"]
    if rejected:
        target = args.rejected or args.file.with_name(
            f"{args.file.stem}.rejected{batch.suffix}")
        batch.write_rejected(target, rejected)
        print(f"rejected records written to {target}: fix them and push that file")
    return 1 if rejected else 0


def _receive(args) -> int:
    if not args.secret:
        raise UsageError("give --secret (or FLAGSHARE_WEBHOOK_SECRET): the subscription's "
                         "whsec_ signing secret")
    with _connect(args) as client:
        inbox = Inbox(args.out)
        try:
            receiver = WebhookReceiver(args.secret, inbox, client.ack, host=args.host,
                                       port=args.port, log=_log)
        except (ValueError, EmptyWebhookSecretError) as exc:
            raise UsageError(f"--secret is not a whsec_ signing secret: {exc}") from exc
        except OSError as exc:
            raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc}") from exc
        _log(f"receiving webhooks at {receiver.url}, handing events to {inbox.path}")
        receiver.serve_forever()
    return 0


def _follow(args) -> int:
    with _connect(args) as client:
        inbox = Inbox(args.out)
        handed = follow(client, inbox, args.cursor or args.out / "feed-cursor",
                        once=args.once, log=_log)
    print(f"follow-feed: {handed} new deliveries handed to {inbox.path}")
    return 0


def _connect(args) -> FlagshareClient:
    missing = [flag for flag, value in (("--api-url", args.api_url),
                                        ("--client-id", args.client_id),
                                        ("--client-secret", args.client_secret)) if not value]
    if missing:
        raise UsageError(f"give {', '.join(missing)} (or FLAGSHARE_API_URL, "
                         "FLAGSHARE_CLIENT_ID, FLAGSHARE_CLIENT_SECRET)")
    client = FlagshareClient(args.api_url, args.client_id, args.client_secret)
    try:
        client.authenticate()
    except BaseException:
        client.close()
        raise
    return client


class Progress:
    """Counts on stderr as records go (when a person is watching), and the results."""

    def __init__(self, kind: str, total: int):
        self.kind, self.total = kind, total
        self.results: list[RecordResult] = []
        self.live = sys.stderr.isatty()

    def add(self, result: RecordResult) -> None:
        self.results.append(result)
        if self.live:
            counts = {s: sum(r.status == s for r in self.results)
                      for s in ("accepted", "unchanged", "rejected")}
            print(f"\r{self.kind}: {len(self.results)}/{self.total}  sent "
                  f"{counts['accepted']}  unchanged {counts['unchanged']}  rejected "
                  f"{counts['rejected']}", end="", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.live and self.results:
            print(file=sys.stderr)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
