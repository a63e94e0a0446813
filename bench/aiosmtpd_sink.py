"""An aiosmtpd SMTP sink: accepts every message, throws it away, prints ``mesg=<count>``.

Usage: ``python bench/aiosmtpd_sink.py PORT``. The output format is the one of Postfix's
``smtp-sink -c``, so the harness reads both the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

from aiosmtpd.smtp import SMTP


class CountingHandler:
    def __init__(self) -> None:
        self.count = 0
        self.out = sys.stdout.buffer

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        self.out.write(b"mesg=%d\r" % self.count)
        self.out.flush()
        return "250 2.0.0 Ok: queued"


async def main(port: int) -> None:
    handler = CountingHandler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="aiosmtpd-sink", data_size_limit=None),
        host="127.0.0.1",
        port=port,
        backlog=1024,
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(int(sys.argv[1])))
