"""A listening socket of its own for each gunicorn worker, so that nginx picks the worker.

nginx keeps its connections to gunicorn open, and a connection stays with the worker
that accepted it. On gunicorn's one shared socket the kernel hands each new connection
to whichever worker calls accept() first: the first one ready, or the busiest (its
thread is awake). Measured on two workers: 14-16 of 16 connections on one worker for a
whole run in most starts, and the image model then ran on one core (235 against 350
images/s, the 70%-load p99 swinging 6-28x between starts of the same code).

So each worker also listens on a socket of its own beside gunicorn's
(``gunicorn.sock`` -> ``gunicorn.0.sock``, ``gunicorn.1.sock``, ...), and nginx's
upstream lists them all with ``least_conn``: every request goes to the worker with the
fewest in flight. A worker creates its slot's path once its model is loaded: until
then connecting there fails at once, and nginx tries another worker (or, with none
ready, answers 503). When a worker stops (recycled, reloaded, shut down) it hands the
path to gunicorn's shared socket (a hard link, so the path always leads somewhere),
where the other workers, or the slot's next worker once ready, accept; then it serves
the connections already waiting on its own socket. No request is dropped, even when
every worker restarts at once (a reload): requests wait on the shared socket as they
did before there were slots.
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
from contextlib import contextmanager
from pathlib import Path

from gunicorn.workers.gthread import ThreadWorker

from api.whole_body import WholeBody

UNIX = "unix:"


def _unix_path(bind: str) -> str | None:
    """The path of gunicorn's socket for a ``unix:`` bind; None for a TCP bind."""
    return bind[len(UNIX):] if bind.startswith(UNIX) else None


def worker_socket_path(bind: str, slot: int) -> str | None:
    """The socket of worker ``slot`` beside gunicorn's unix socket ``bind``; None for a TCP bind."""
    shared = _unix_path(bind)
    if shared is None:
        return None
    path = Path(shared)
    return str(path.with_name(f"{path.stem}.{slot}{path.suffix}"))


def choose_slot(held: list[int], slots: int) -> int:
    """The slot for a new worker, given those live workers hold: a free one, lowest first.

    All held happens while a reload's new workers start before the old ones are gone:
    the least shared one then; the new worker takes the path over when it is ready.
    """
    return min(range(slots), key=lambda slot: (held.count(slot), slot))


@contextmanager
def _directory_lock(path: str):
    # Taking a path over and handing it back both happen under one lock on the
    # directory, so a stopping worker never hands back the path its successor just took.
    descriptor = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def remove_slots(bind: str, slots: int) -> None:
    """Remove the slots' paths (the master, once it stopped): nothing listens there any more."""
    for slot in range(slots):
        path = worker_socket_path(bind, slot)
        if path:
            Path(path).unlink(missing_ok=True)


class WorkerSocket:
    """A worker's own unix socket, listening at its slot's path from creation until release()."""

    def __init__(self, bind: str, slot: int, umask: int, backlog: int):
        self.path = worker_socket_path(bind, slot)
        self.shared = _unix_path(bind)
        self.released = False
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Reachable only through filesystem rights, as gunicorn's own socket (its umask).
        temporary = f"{self.path}.{os.getpid()}"
        previous_umask = os.umask(umask)
        try:
            self.listener.bind(temporary)
        finally:
            os.umask(previous_umask)
        self.listener.listen(backlog)
        self._inode = os.stat(temporary).st_ino
        with _directory_lock(self.path):
            os.rename(temporary, self.path)

    def release(self) -> None:
        """Hand the path back to the shared socket if it is still this one's: nobody new connects here."""
        self.released = True
        with _directory_lock(self.path):
            try:
                if os.stat(self.path).st_ino != self._inode:
                    return  # a reload's new worker took the slot over already
                # A new name of the shared socket, renamed over the path: whoever connects
                # meanwhile finds this socket or the shared one, never nothing.
                temporary = f"{self.path}.{os.getpid()}"
                os.link(self.shared, temporary)
                os.rename(temporary, self.path)
            except FileNotFoundError:  # the master is gone, and its socket with it
                Path(self.path).unlink(missing_ok=True)

    def has_waiting_connection(self) -> bool:
        """True while a connection made before release() waits to be accepted."""
        poller = select.poll()  # not select(): a busy worker's descriptors may pass 1024
        poller.register(self.listener, select.POLLIN)
        return bool(poller.poll(0))


class SlotThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, also accepting on its own slot's socket (see the module).

    ``slot`` is set by the master before the fork (deploy/gunicorn.conf.py's pre_fork).
    Written against gunicorn 27's ThreadWorker (setup.py pins the major version).
    """

    slot: int | None = None
    own_socket: WorkerSocket | None = None

    def run(self) -> None:
        bind = self.cfg.bind[0]
        if self.slot is not None and worker_socket_path(bind, self.slot):
            # The app, and so the model, is loaded by now: requests can come.
            self.own_socket = WorkerSocket(bind, self.slot, self.cfg.umask, self.cfg.backlog)
            self.sockets = [*self.sockets, self.own_socket.listener]
            self.log.info("Worker %s serves slot %s at %s", os.getpid(), self.slot, self.own_socket.path)
        try:
            super().run()
        finally:
            # The loop also ends without stopping accepts first (the master gone, an error).
            if self.own_socket and not self.own_socket.released:
                self.own_socket.release()

    def handle_request(self, req, conn):
        # Each body is read whole, straight from the socket (api/whole_body.py says why).
        req.body = WholeBody(req.body)
        return super().handle_request(req, conn)

    def set_accept_enabled(self, enabled: bool) -> None:
        # Called with False when the worker stops (TERM, max_requests, the master gone),
        # and also while it holds worker_connections; only stopping gives the slot up.
        own = self.own_socket
        if not enabled and not self.alive and own and not own.released:
            own.release()
            while own.has_waiting_connection():
                self.accept(own.listener)
        super().set_accept_enabled(enabled)
