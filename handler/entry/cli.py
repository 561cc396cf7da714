"""Command line: `serve` runs the local API, `invoke` runs one event, `history` prints a model's changes, `sweep` removes leftovers,
`deliveries` and `redeliver` show and replay change events out, `import-mlflow` copies an MLflow registry."""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import uuid
from typing import Any

from ..api.app import App
from ..config import DEFAULT_LOCAL_STORE as DEFAULT_STORE
from ..config import Settings
from ..errors import ApiError
from ..notify.delivery import Deliverer, Loop
from ..notify.delivery import workspaces as all_workspaces
from ..registry import upkeep
from ..rules.validation import validate
from . import events, fc
from .compose import build_deliverer
from .import_targets import Here, Remote, Target
from .importer import Importer, Source, basic, progress_lines
from .local import LocalServer, same_origin_only
from .mlflow_http import MlflowHttpError


class LocalContext:
    """The part of FC's context the function reads; nothing is known about the caller locally."""

    def __init__(self) -> None:
        self.request_id = str(uuid.uuid4())
        self.account_id = None
        self.credentials = None


class _LineFormatter(logging.Formatter):
    """Access lines as the JSON they are; anything else with its level in front."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return message if record.name == "handler.access" else f"{record.levelname} {message}"


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535)")
    return int(text)


def _seq(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a commit's sequence number (0 or more)")
    return int(text)


def _print_history(changes: list[dict[str, Any]], as_json: bool) -> None:
    """A header and a line per change, in columns; or JSON Lines."""
    if as_json:
        for change in changes:
            print(json.dumps(change, ensure_ascii=False))
        return
    rows = [("SEQ", "BY", "OPERATION", "AT", "VERSION")] + [
        (str(c["Seq"]), c["By"], c["Operation"], c["At"], c.get("VersionName", "")) for c in changes]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print(f"{row[0]:>{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]:<{widths[3]}}  {row[4]}".rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handler", description="PAI-compatible model registry")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the local HTTP API (like API Gateway in front of the function)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; ::1 for IPv6)")
    serve.add_argument("--port", type=_port, default=9000, help="port to listen on (default 9000; 0: any free port)")
    serve.add_argument("--store", help=f"oss://BUCKET/PREFIX, file://PATH or memory:// (default: $MODEL_STORE or {DEFAULT_STORE})")
    serve.add_argument("--insecure", action="store_true",
                       help="listen on a non-loopback address without access keys (anyone who reaches it can change models)")
    invoke = commands.add_parser("invoke", help="run one event through the function and print what it returns")
    invoke.add_argument("file", nargs="?", default="-", help="event JSON file, or - for standard input")
    invoke.add_argument("--store", help="as for serve")
    history = commands.add_parser("history", help="print who changed a model (and its versions), and when")
    history.add_argument("model_id", metavar="MODEL_ID")
    history.add_argument("--since", type=_seq, default=0, metavar="SEQ",
                         help="only the changes of commits after SEQ (the first column), reading only those")
    history.add_argument("--json", action="store_true", help="one JSON object per change and line, without the header")
    history.add_argument("--store", help="as for serve")
    sweep = commands.add_parser("sweep", help="remove what interrupted writes left and nothing points to")
    sweep.add_argument("--older-than", type=float, default=None, metavar="SECONDS",
                       help="only what is older than this (default 600, at least 60: far longer than any request)")
    sweep.add_argument("--seconds", type=float, default=None, metavar="SECONDS",
                       help="stop starting work after this long; the next sweep continues where this one stopped")
    sweep.add_argument("--limit", type=int, default=None, metavar="N",
                       help="look at no more than N record files and workspaces (the next sweep continues)")
    sweep.add_argument("--store", help="as for serve")
    deliveries = commands.add_parser("deliveries", help="print each notification rule's cursor, lag and dead letters")
    deliveries.add_argument("--json", action="store_true", help="one JSON object per rule and workspace")
    deliveries.add_argument("--store", help="as for serve")
    redeliver = commands.add_parser("redeliver", help="send a rule's events again: its dead letters, or every event from a commit on")
    redeliver.add_argument("rule", metavar="RULE")
    redeliver.add_argument("--from", dest="from_seq", type=int, metavar="SEQ",
                           help="move the rule's cursor back: every event from commit SEQ on is sent again, in order")
    redeliver.add_argument("--workspace", help="only this workspace (default: every workspace the rule covers)")
    redeliver.add_argument("--store", help="as for serve")
    imports = commands.add_parser("import-mlflow", help="copy an MLflow registry (models, versions, aliases) into this one")
    imports.add_argument("--from", dest="source", required=True, metavar="MLFLOW_URL",
                         help="the MLflow server's URL (its tracking URI), read through its REST API")
    imports.add_argument("--to", dest="to", metavar="REGISTRY_URL",
                         help="where to import: a store (as --store for serve; default $MODEL_STORE, else ./model-store), or a "
                              "running registry's http(s):// URL, "
                              "written through its MLflow API with REGISTRY_ACCESS_KEY_ID and REGISTRY_ACCESS_KEY_SECRET")
    imports.add_argument("--workspace", help="the workspace to import into (default: the default workspace of --to's registry; "
                              "for a store, $DEFAULT_WORKSPACE_ID or default)")
    imports.add_argument("--workers", type=int, default=8, metavar="N", help="models imported at once (default 8)")
    imports.add_argument("--json", action="store_true", help="the summary as one JSON object on standard output")
    args = parser.parse_args(argv)
    if args.command == "import-mlflow":
        remote = (args.to or "").startswith(("http://", "https://"))
        args.store = None if remote else args.to
        if args.store is not None and args.store.partition("://")[0] not in ("file", "oss"):
            imports.error(f"--to must be a store (file://PATH or oss://BUCKET/PREFIX) or a running registry's http:// or "
                          f"https:// URL, not {args.store[:80]!r}")
        if args.workers < 1:
            imports.error(f"--workers must be at least 1, not {args.workers}")

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    if args.store:
        os.environ["MODEL_STORE"] = args.store
    try:
        app = fc.get_app()
    except (ValueError, OSError) as e:
        parser.error(str(e))
    if args.command == "serve":
        return _serve(args, app)
    if args.command in ("deliveries", "redeliver"):
        deliverer = build_deliverer(Settings.from_env(), app.registry.store, fc.credentials)
        if deliverer is None:
            print("NOTIFICATIONS is not set: there are no rules", file=sys.stderr)
            return 2
        return _deliveries(args, deliverer) if args.command == "deliveries" else _redeliver(args, deliverer)
    if args.command == "history":
        try:
            changes = upkeep.history(app.registry, args.model_id, args.since)
        except Exception as e:  # noqa: BLE001 - one line for the operator, whatever it was
            print(f"cannot read the history of {args.model_id[:80]}: {getattr(e, 'message', type(e).__name__)}", file=sys.stderr)
            return 1
        _print_history(changes, args.json)
        return 0
    if args.command == "import-mlflow":
        return _import_mlflow(args, app)
    if args.command == "sweep":
        options = {name: value for name, value in (("older_than", args.older_than), ("seconds", args.seconds),
                                                   ("limit", args.limit)) if value is not None}
        try:
            print(json.dumps(app.sweep(**options)))
        except ValueError as e:
            parser.error(str(e))
        return 0
    try:
        event = sys.stdin.buffer.read() if args.file == "-" else open(args.file, "rb").read()
    except OSError as e:
        print(f"cannot read the event file {args.file}: {e.strerror}", file=sys.stderr)
        return 2  # a mistake, not a transient failure (1)
    try:
        print(fc.handler(event, LocalContext()))
    except events.RetryLater as e:
        print(str(e), file=sys.stderr)
        return 1
    return 0


def _serve(args: argparse.Namespace, app: App) -> int:
    loopback = args.host in ("127.0.0.1", "::1", "localhost") or args.host.startswith("127.")
    if app.verifier is None and not loopback:
        if not args.insecure:
            print(f"refusing to listen on {args.host or 'every address'} without access keys (set ACCESS_KEYS, or pass --insecure)",
                  file=sys.stderr)
            return 2
        print("warning: listening beyond this machine without access keys: anyone who reaches it can change models",
              file=sys.stderr)
    try:
        server = LocalServer((args.host, args.port), lambda: app, app.max_body_bytes)
    except OSError as e:
        print(f"cannot listen on {args.host} port {args.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    deliverer = build_deliverer(Settings.from_env(), app.registry.store, fc.credentials)
    if app.verifier is None:
        app.hooks.append(same_origin_only(loopback))  # unsigned: only this server's own pages and other programs
    if app.verifier is not None:
        mode = "signed requests only (ACCESS_KEYS)"
        with contextlib.suppress(ApiError):
            app.verifier.keys.get("")  # read the document now: a problem is logged at startup, not only answered as 403s
    else:
        mode = "no signatures checked: " + ("loopback only" if loopback else "open to anyone who reaches it (--insecure)")

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the server as Ctrl-C does

    signal.signal(signal.SIGTERM, stop)  # before the startup line: whoever reads it may stop the server at once
    loop = None
    try:
        print(f"PAI model registry listening on {server.url} (store: {_store_location()}; {mode}); console: {server.url}/console/",
              file=sys.stderr, flush=True)
        if deliverer is not None:
            loop = Loop(deliverer).start()  # change events out, never waited for by an answer
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if loop is not None:
            loop.stop()
        server.server_close()
        app.registry.settle()  # a checkpoint being written is finished, not cut short
    return 0


def _store_location() -> str:
    """The store, with a file store's directory as an absolute path."""
    url = os.environ.get("MODEL_STORE") or DEFAULT_STORE
    scheme, _, rest = url.partition("://")
    return f"file://{os.path.abspath(rest)}" if scheme == "file" else url



def _import_mlflow(args: argparse.Namespace, app: App) -> int:
    """0 when everything is here, 1 when something was refused or an end could not be read, 2 for bad arguments."""
    try:
        validate("common.json#/$defs/WorkspaceId", args.workspace or app.default_workspace, root="--workspace")
        source = Source(args.source)
        target: Target = Here(app.registry, args.workspace or app.default_workspace)
        if args.store is None and args.to:
            key_id = os.environ.get("REGISTRY_ACCESS_KEY_ID")
            target = Remote(args.to, args.workspace, basic(key_id, os.environ.get("REGISTRY_ACCESS_KEY_SECRET", "")) if key_id else None)
    except (ApiError, MlflowHttpError) as e:
        print(f"import-mlflow: {getattr(e, 'message', e)}", file=sys.stderr)
        return 2
    try:
        summary = Importer(target).run(source, args.workers, progress_lines())
    except MlflowHttpError as e:
        print(f"import-mlflow: {e}", file=sys.stderr)
        return 1
    finally:
        app.registry.settle()
    if args.json:
        print(json.dumps(summary.as_json()))
    else:
        print("\n".join(summary.lines()))
    return 1 if summary.refused else 0


def _deliveries(args: argparse.Namespace, deliverer: Deliverer) -> int:
    rows = deliverer.status()
    if deliverer.book.problem:
        print(f"the notifications document is unusable: {deliverer.book.problem}", file=sys.stderr)
        return 1
    if not args.json:
        print("RULE WORKSPACE CURSOR HEAD LAG DEAD-LETTERS FAILING")
    for row in rows:
        if args.json:
            print(json.dumps(row))
            continue
        failing = row.get("Failing")
        note = (f"commit {failing['Seq']} event {failing['Index']}: {failing['Attempts']} attempts, next in "
                f"{row['NextAttempt']:.0f} s: {failing['Error']}") if failing else "-"
        cursor, lag = ("-" if row[k] is None else row[k] for k in ("Cursor", "Lag"))  # None: the rule has not started there
        print(f"{row['Rule']} {row['WorkspaceId']} {cursor} {row['Head']} {lag} {row['DeadLetters']} {note}")
    return 0


def _redeliver(args: argparse.Namespace, deliverer: Deliverer) -> int:
    rules = {rule.name: rule for rule in deliverer.book.rules()}
    rule = rules.get(args.rule)
    if rule is None:
        why = f" ({deliverer.book.problem})" if deliverer.book.problem else ""
        print(f"no rule {args.rule[:64]!r} in the notifications document{why}", file=sys.stderr)
        return 1
    if args.from_seq is not None and args.from_seq < 1:
        print("--from is a commit's seq, 1 or more", file=sys.stderr)
        return 2
    workspaces = [args.workspace] if args.workspace else [w for w in all_workspaces(deliverer.store) if rule.covers(w)]
    for workspace_id in workspaces:
        if args.from_seq is not None:
            deliverer.redeliver(rule.name, workspace_id, args.from_seq)
            print(f"{rule.name} {workspace_id}: every event from commit {args.from_seq} on will be sent again")
        else:
            sent, failed = deliverer.resend_dead_letters(rule, workspace_id)
            print(f"{rule.name} {workspace_id}: {sent} dead letters delivered, {failed} still failing")
    return 0

