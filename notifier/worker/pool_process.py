"""A ConcurrentPool process: runs each job it reads in one of its threads, writes the result
back, and exits once the main process closes its job pipe."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

from billiard.einfo import ExceptionInfo
from billiard.exceptions import WorkerLostError
from celery import signals

from notifier.worker.pool_pipes import frame, split_frames, write_all

__all__ = ["run_pool_process"]


def run_pool_process(
    app: Any,
    hostname: str,
    *,
    jobs_fd: int,
    results_fd: int,
    threads: int,
    name: str,
    close_fds: Iterable[int],
) -> NoReturn:
    """Run a freshly forked pool process to its end; ``close_fds`` are the main process's."""
    code = 1
    try:
        for fd in close_fds:
            os.close(fd)
        code = _serve_jobs(app, hostname, jobs_fd, results_fd, threads, name=name)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def _serve_jobs(
    app: Any, hostname: str, jobs_fd: int, results_fd: int, threads: int, *, name: str
) -> int:
    """A pool process: run each job in a thread, send its result back; exit at end of input."""
    import multiprocessing

    from celery import platforms

    # Log lines name the process, as prefork's ForkPoolWorker-N do.
    multiprocessing.current_process().name = name
    from celery.app import trace
    from celery.app.trace import build_tracer
    from celery.worker import state as worker_state

    # Die with the main process (as prefork's children do); the main process coordinates
    # shutdown, so signals sent to the whole process group must not cut sends short.
    platforms.set_pdeathsig("SIGKILL")
    for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    platforms.set_mp_process_title("celeryd", hostname=hostname)
    app.loader.init_worker()
    app.loader.init_worker_process()
    app.set_current()
    app.set_default()
    app.finalize()
    trace._tasks = app._tasks
    for name, task in app.tasks.items():
        task.__trace__ = build_tracer(name, task, app.loader, hostname, app=app)
    worker_state.reset_state()
    signals.worker_process_init.send(sender=hostname)

    write_lock = threading.Lock()

    def run(job_id: int, target: Callable[..., Any], args: tuple[Any, ...], kw: Any) -> None:
        try:
            payload = frame((job_id, True, target(*args, **kw)))
        except BaseException as exc:
            if not isinstance(exc, Exception):
                exc = WorkerLostError(repr(exc))
            try:
                raise exc
            except BaseException:
                einfo = ExceptionInfo()
            payload = frame((job_id, False, einfo))
        with write_lock:
            write_all(results_fd, payload)

    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="notifier-task")
    buffer = bytearray()
    while True:
        try:
            chunk = os.read(jobs_fd, 1 << 16)
        except InterruptedError:
            continue
        if not chunk:
            break
        buffer += chunk
        for job_id, target, args, kw in split_frames(buffer):
            executor.submit(run, job_id, target, args, kw)
    # End of input: the main process is stopping. Finish what runs, then close politely.
    executor.shutdown(wait=True)
    signals.worker_process_shutdown.send(sender=hostname, pid=os.getpid(), exitcode=0)
    sys.stdout.flush()
    sys.stderr.flush()
    return 0
