"""Command line: `python -m handler serve` runs the local API; `python -m handler invoke` runs one event."""
from __future__ import annotations

import argparse
import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handler", description="PAI-compatible model registry")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the local HTTP API (like API Gateway in front of the function)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=9000)
    serve.add_argument("--store", help="oss://BUCKET/PREFIX, file://PATH or memory:// (default: $MODEL_STORE or file://./model-store)")
    invoke = commands.add_parser("invoke", help="run one event through the function and print what it returns")
    invoke.add_argument("file", nargs="?", default="-", help="event JSON file, or - for standard input")
    invoke.add_argument("--store", help="as for serve")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    if args.store:
        os.environ["MODEL_STORE"] = args.store
    from . import events, index
    from .local import LocalContext, LocalServer

    try:
        app = index.get_app()
    except ValueError as e:
        parser.error(str(e))
    if args.command == "serve":
        server = LocalServer((args.host, args.port), index.handler, app.max_body_bytes)
        print(f"PAI model registry listening on {server.url} (store: {os.environ.get('MODEL_STORE') or 'file://./model-store'})",
              file=sys.stderr, flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
        return 0
    event = sys.stdin.buffer.read() if args.file == "-" else open(args.file, "rb").read()
    try:
        print(index.handler(event, LocalContext()))
    except events.RetryLater as e:
        print(str(e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
