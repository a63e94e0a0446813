"""``python -m notifier.devinbox``: run the development inbox until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from notifier.devinbox import DevInbox, DevInboxError
from notifier.devinbox.deliverability import configured_dkim_records


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port must be between 1 and 65535, got {port}")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m notifier.devinbox",
        description="Development inbox: an SMTP server that keeps every message in a Maildir, "
        "with a web UI and a MailHog-compatible JSON API.",
    )
    parser.add_argument(
        "--maildir", type=Path, required=True, help="Maildir directory (created if missing)"
    )
    parser.add_argument("--smtp-port", type=_port, default=1025, help="SMTP port (default 1025)")
    parser.add_argument("--http-port", type=_port, default=8025, help="web port (default 8025)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address both servers bind to (default 127.0.0.1)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # aiosmtpd logs every SMTP command at INFO; one line per message (ours) is enough.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    try:
        inbox = DevInbox(
            maildir=args.maildir,
            smtp_host=args.host,
            smtp_port=args.smtp_port,
            http_host=args.host,
            http_port=args.http_port,
            # The keys DKIM_* configure (the environment `notifier dev` gives the worker too).
            dkim_records=configured_dkim_records(),
        )
        inbox.serve_forever()
    except (DevInboxError, OSError) as exc:
        print(f"devinbox: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
