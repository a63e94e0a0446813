"""ConcurrentPool: a Celery pool of N processes, each running many tasks at once.

``celery -A notifier worker -c N`` starts N pool processes, as prefork does, but each one
runs up to ``SENDS_IN_FLIGHT_PER_PROCESS`` tasks at the same time: a task runs in one of the
process's threads, and its coroutines (Redis, SMTP) on the process's one event loop
(:class:`~notifier.worker.runtime.WorkerRuntime`), so SMTP round trips overlap instead of
adding up. The worker's main process keeps Celery's role: it fetches messages (prefetch =
``worker_prefetch_multiplier`` x N), acknowledges each one after its task ran (late acks), and
rejects with requeue the messages of a process that died (reject-on-worker-lost), exactly
through Celery's own request callbacks. This module is the main process's side; each pool
process runs :mod:`notifier.worker.pool_process`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from billiard.einfo import ExceptionInfo
from billiard.exceptions import WorkerLostError
from celery import signals
from celery.concurrency.base import BasePool

from notifier.worker.pool_pipes import frame, split_frames, write_all
from notifier.worker.pool_process import run_pool_process

__all__ = ["ConcurrentPool"]

log = logging.getLogger(__name__)

#: A warm shutdown waits for the tasks in flight this long beyond TASK_TIME_LIMIT (which
#: bounds each of them); then the rest are killed and their messages come back.
SHUTDOWN_GRACE_SECONDS = 10.0


@dataclass
class _Job:
    callback: Callable[..., Any] | None
    error_callback: Callable[..., Any] | None
    accept_callback: Callable[..., Any] | None


@dataclass
class _Child:
    pid: int
    jobs_fd: int
    results_fd: int
    jobs: dict[int, _Job] = field(default_factory=dict)
    buffer: bytearray = field(default_factory=bytearray)
    alive: bool = True


def _limits() -> tuple[int, float]:
    """Tasks in flight per process, and how long a warm shutdown waits for them."""
    from notifier.settings import get_settings

    settings = get_settings()
    return settings.sends_in_flight_per_process, settings.task_time_limit + SHUTDOWN_GRACE_SECONDS


class ConcurrentPool(BasePool):  # type: ignore[misc]
    """Celery execution pool: ``limit`` forked processes, many tasks in flight in each."""

    #: The worker gives every request to the pool at once; prefetch is the only bound.
    uses_semaphore = False
    #: Stopping waits for children: not from a signal handler.
    signal_safe = False
    task_join_will_block = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.per_process, self.shutdown_wait = _limits()
        self._forked = 0
        self._children: list[_Child] = []
        self._backlog: collections.deque[tuple[int, bytes, _Job]] = collections.deque()
        self._next_id = 0
        self._hub: Any = None
        self._reader: threading.Thread | None = None
        self._lock = threading.RLock()
        self._stopping = False
        app, hostname = (self.options.get("initargs") or (None, None))[:2]
        self._app = app or self.app
        self._hostname: str = hostname or ""
        for option in ("maxtasksperchild", "max_memory_per_child"):
            if self.options.get(option):
                log.warning(
                    "ConcurrentPool ignores %s: its processes live as long as the worker", option
                )

    # Starting and growing.

    def on_start(self) -> None:
        for _ in range(self.limit):
            self._children.append(self._fork())
        if self.options.get("threads", True):
            # No event loop in the main process (a transport without one): read results in a
            # thread and run the callbacks there, as Celery's thread pool does.
            self._reader = threading.Thread(
                target=self._read_forever, name="notifier-pool-results", daemon=True
            )
            self._reader.start()
        self.on_apply = self._apply

    def _fork(self) -> _Child:
        jobs_read, jobs_write = os.pipe()
        results_read, results_write = os.pipe()
        inherited = [fd for c in self._children for fd in (c.jobs_fd, c.results_fd)]
        self._forked += 1
        index = self._forked
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            run_pool_process(
                self._app,
                self._hostname,
                jobs_fd=jobs_read,
                results_fd=results_write,
                threads=self.per_process,
                name=f"ConcurrentPoolWorker-{index}",
                close_fds=[jobs_write, results_read, *inherited],
            )
        os.close(jobs_read)
        os.close(results_write)
        os.set_blocking(results_read, False)
        child = _Child(pid=pid, jobs_fd=jobs_write, results_fd=results_read)
        if self._hub is not None:
            self._hub.add_reader(results_read, self._on_readable, child)
        log.debug("pool process %d started", pid)
        return child

    def register_with_event_loop(self, loop: Any) -> None:
        self._hub = loop
        for child in self._children:
            if child.alive:
                loop.add_reader(child.results_fd, self._on_readable, child)

    # Handing out tasks.

    def _apply(
        self,
        target: Callable[..., Any],
        args: Any = None,
        kwargs: Any = None,
        callback: Callable[..., Any] | None = None,
        accept_callback: Callable[..., Any] | None = None,
        error_callback: Callable[..., Any] | None = None,
        **_: Any,
    ) -> None:
        with self._lock:
            self._next_id += 1
            job_id = self._next_id
            job = _Job(callback, error_callback, accept_callback)
            payload = frame((job_id, target, tuple(args or ()), dict(kwargs or {})))
            child = self._least_busy()
            if child is None:
                self._backlog.append((job_id, payload, job))
                return
            self._send(child, job_id, payload, job)

    def _least_busy(self) -> _Child | None:
        candidates = [c for c in self._children if c.alive and len(c.jobs) < self.per_process]
        return min(candidates, key=lambda c: len(c.jobs)) if candidates else None

    def _send(self, child: _Child, job_id: int, payload: bytes, job: _Job) -> None:
        child.jobs[job_id] = job
        try:
            write_all(child.jobs_fd, payload)
        except OSError:
            # The process just died; its jobs (this one included) are failed as lost when
            # its results pipe reports the end.
            log.warning("pool process %d is gone; job %d will be given back", child.pid, job_id)
            return
        self._call(job.accept_callback, child.pid, time.monotonic())

    def _drain_backlog(self) -> None:
        while self._backlog and not self._stopping:
            child = self._least_busy()
            if child is None:
                return
            job_id, payload, job = self._backlog.popleft()
            self._send(child, job_id, payload, job)

    # Results.

    def _on_readable(self, child: _Child) -> None:
        with self._lock:
            self._read(child)
            self._drain_backlog()

    def _read(self, child: _Child) -> None:
        if not child.alive:
            return
        ended = False
        while True:
            try:
                chunk = os.read(child.results_fd, 1 << 16)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                ended = True
                break
            child.buffer += chunk
        # Results written before the process ended count: only what is left is lost.
        for job_id, ok, value in split_frames(child.buffer):
            job = child.jobs.pop(job_id, None)
            if job is None:
                continue
            if ok:
                self._call(job.callback, value)
            else:
                self._call(job.error_callback, value)
        if ended:
            self._lost(child)

    def _call(self, callback: Callable[..., Any] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("pool callback %r raised", callback)

    def _lost(self, child: _Child) -> None:
        """A process ended: its unfinished tasks are lost (their messages are given back)."""
        if not child.alive:
            return
        child.alive = False
        if self._hub is not None:
            self._hub.remove_reader(child.results_fd)
        for fd in (child.results_fd, child.jobs_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        exitcode = _reap(child.pid)
        lost, child.jobs = child.jobs, {}
        if exitcode != 0:
            # A process that exited cleanly sent this itself; a killed one could not.
            signals.worker_process_shutdown.send(
                sender=self._hostname, pid=child.pid, exitcode=exitcode
            )
        if lost:
            log.error(
                "pool process %d exited (%s) with %d task(s) in flight; they go back to the queue",
                child.pid,
                _describe_exit(exitcode),
                len(lost),
            )
        for job in lost.values():
            try:
                raise WorkerLostError(f"Worker exited prematurely: {_describe_exit(exitcode)}.")
            except WorkerLostError:
                self._call(job.error_callback, ExceptionInfo())
        self._children.remove(child)
        if not self._stopping:
            self._children.append(self._fork())

    def _read_forever(self) -> None:
        while not self._stopping:
            self._poll(1.0)

    def _poll(self, timeout: float) -> None:
        with self._lock:
            fds = {c.results_fd: c for c in self._children if c.alive}
        if not fds:
            time.sleep(min(timeout, 0.05))
            return
        try:
            ready, _, _ = select.select(list(fds), [], [], timeout)
        except (OSError, ValueError):
            return
        for fd in ready:
            self._on_readable(fds[fd])

    # Stopping.

    def on_stop(self) -> None:
        """Warm shutdown: finish what runs, give back what has not started, stop processes."""
        with self._lock:
            self._stopping = True
            not_started = len(self._backlog)
            # Never sent to a process: the messages stay unacknowledged and the broker
            # connection's close restores them to the queue.
            self._backlog.clear()
            for child in self._children:
                with contextlib.suppress(OSError):
                    os.close(child.jobs_fd)  # end of input: the process drains and exits
            in_flight = sum(len(c.jobs) for c in self._children)
        log.info(
            "stopping the pool: waiting for %d task(s) in flight; %d not started go back",
            in_flight,
            not_started,
        )
        deadline = time.monotonic() + self.shutdown_wait
        while any(c.alive for c in self._children) and time.monotonic() < deadline:
            self._poll(0.2)
            self._flush_acks()
        self._kill_all()
        self._flush_acks()

    def _flush_acks(self) -> None:
        # With an event loop, the consumer queues each ack on it (hub.call_soon); the loop no
        # longer runs during shutdown, so run them here, as Celery's prefork pool does.
        if self._hub is None:
            return
        try:
            from celery.concurrency.prefork import _run_ready_callbacks
        except ImportError:  # a Celery without it: run whatever the loop has queued
            for callback in list(self._hub._pop_ready()):
                self._call(callback)
            return
        _run_ready_callbacks(self._hub)

    def on_terminate(self) -> None:
        self._stopping = True
        self._backlog.clear()
        self._kill_all()

    def _kill_all(self) -> None:
        for child in list(self._children):
            if child.alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
                with self._lock:
                    self._lost(child)

    def terminate_job(self, pid: int, signal: Any = None) -> None:
        raise NotImplementedError("ConcurrentPool runs many tasks per process: cannot kill one")

    def restart(self) -> None:
        raise NotImplementedError("ConcurrentPool does not support pool restarts")

    def grow(self, n: int = 1) -> None:
        raise NotImplementedError("ConcurrentPool has a fixed size (-c): no --autoscale")

    def shrink(self, n: int = 1) -> None:
        raise NotImplementedError("ConcurrentPool has a fixed size (-c): no --autoscale")

    # What Celery's inspect and Flower show.

    def _get_info(self) -> dict[str, Any]:
        info: dict[str, Any] = dict(super()._get_info())
        info.update(
            {
                "max-concurrency": self.limit,
                "processes": [c.pid for c in self._children if c.alive],
                "max-tasks-per-child": "N/A",
                "put-guarded-by-semaphore": False,
                "timeouts": [0, 0],
                "tasks-in-flight-per-process": self.per_process,
                "in-flight": {c.pid: len(c.jobs) for c in self._children if c.alive},
                "not-started": len(self._backlog),
            }
        )
        return info

    @property
    def num_processes(self) -> int:
        return int(self.limit)


def _reap(pid: int) -> int | None:
    deadline = time.monotonic() + 5.0
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5.0
        time.sleep(0.01)


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            return f"signal {-exitcode} ({signal.Signals(-exitcode).name})"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exitcode {exitcode}"
