"""A private Postfix instance for tests: its own config, queue and data directories.

Started with ``postfix -c DIR start`` (as root: Postfix's master drops to the ``postfix``
user). Its smtpd listens on a free loopback port; ``routes`` send each domain to a loopback
SMTP server, so it relays to test servers and delivers its DSNs to the bounce receiver.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from tests.support.ports import free_port, wait_for_port

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

# chroot off everywhere ("n"): a chrooted daemon would need copies of /etc files in the queue.
MASTER_CF = """\
{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def available() -> str | None:
    """None when a private Postfix can run here, else why not."""
    if not (Path(POSTFIX).exists() and os.access(POSTFIX, os.X_OK)):
        return "postfix is not installed (scripts/ensure-system-deps installs it)"
    if os.geteuid() != 0:
        return "postfix's master must start as root (it then runs as the postfix user)"
    return None


class PostfixInstance:
    """``with PostfixInstance(routes={...}) as mta: mta.port``.

    Its directory is made under /tmp, not pytest's tmp_path: Postfix's daemons run as the
    ``postfix`` user and must reach it, while pytest's directories are private to root.
    """

    def __init__(self, *, routes: Mapping[str, int]) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="notifier-postfix-"))
        self.directory.chmod(0o755)
        self.config = self.directory / "conf"
        self.port = free_port()
        self.routes = dict(routes)

    def _write_config(self) -> None:
        queue, data = self.directory / "queue", self.directory / "data"
        for path in (self.config, queue, data):
            path.mkdir(parents=True, exist_ok=True)
        shutil.chown(data, "postfix")
        transport = ", ".join(
            f"{domain}=smtp:[127.0.0.1]:{port}" for domain, port in self.routes.items()
        )
        main_cf = {
            "compatibility_level": "3.6",
            "queue_directory": str(queue),
            "data_directory": str(data),
            "command_directory": "/usr/sbin",
            "daemon_directory": "/usr/lib/postfix/sbin",
            "meta_directory": "/etc/postfix",
            "shlib_directory": "/usr/lib/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "mta.notifier.test",
            "mydomain": "notifier.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "transport_maps": f"inline:{{{transport}}}",
            "default_transport": "error:no route in this test instance",
            "smtp_host_lookup": "native",
            "smtputf8_enable": "no",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            # postlogd writes it as the postfix user: inside the data directory, which it owns.
            "maillog_file": str(self.directory / "data" / "maillog"),
            "maillog_file_prefixes": str(self.directory),
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "smtp_connect_timeout": "5s",
            "biff": "no",
            "notify_classes": "",
            "syslog_name": "postfix-test",
        }
        (self.config / "main.cf").write_text(
            "".join(f"{key} = {value}\n" for key, value in main_cf.items())
        )
        (self.config / "master.cf").write_text(MASTER_CF.format(port=f"127.0.0.1:{self.port}"))

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POSTFIX, "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self) -> PostfixInstance:
        self._write_config()
        started = self._postfix("start")
        if started.returncode != 0:
            raise RuntimeError(f"postfix did not start: {started.stdout}{started.stderr}")
        wait_for_port(self.port, timeout=20)
        return self

    def stop(self) -> None:
        self._postfix("stop")
        deadline = time.monotonic() + 10
        pid_file = self.directory / "queue" / "pid" / "master.pid"
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(self.directory, ignore_errors=True)

    def log(self) -> str:
        path = self.directory / "data" / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> PostfixInstance:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
