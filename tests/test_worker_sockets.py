"""Each gunicorn worker's own socket (api/worker_sockets.py) and nginx's list of them.

Real unix sockets in a temporary directory; one listening socket stands for gunicorn's
shared one. End to end (real gunicorn and nginx): tests/test_e2e.py.
"""

from __future__ import annotations

import re
import socket
import stat

import pytest
from render_nginx import upstream_servers

from api.worker_sockets import WorkerSocket, choose_slot, remove_slots, worker_socket_path


def test_a_worker_socket_sits_beside_gunicorn_s_and_a_tcp_bind_has_none():
    assert worker_socket_path("unix:/run/keras-fleet/gunicorn.sock", 0) == "/run/keras-fleet/gunicorn.0.sock"
    assert worker_socket_path("unix:run/gunicorn.sock", 3) == "run/gunicorn.3.sock"
    assert worker_socket_path("127.0.0.1:8000", 0) is None


@pytest.mark.parametrize("held, expected", [([], 0), ([0], 1), ([1], 0), ([0, 1], 0), ([0, 1, 0], 1), ([1, 1, 0], 0)])
def test_a_new_worker_takes_a_free_slot_else_the_least_shared(held, expected):
    assert choose_slot(held, 2) == expected


@pytest.fixture
def shared(tmp_path):
    """gunicorn's shared socket: listening, as the master's is."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "gunicorn.sock"))
    listener.listen(16)
    listener.setblocking(False)
    yield listener
    listener.close()


def waiting(listener: socket.socket) -> int:
    """Accept (and close) every connection waiting on ``listener``; how many there were."""
    listener.setblocking(False)
    count = 0
    while True:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


def connect(path: str) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(path)
    return client


def test_a_slot_is_its_worker_s_from_ready_and_the_shared_socket_s_once_it_stopped(tmp_path, shared):
    bind = f"unix:{tmp_path / 'gunicorn.sock'}"
    path = worker_socket_path(bind, 0)
    with pytest.raises(FileNotFoundError):  # no worker ready yet: nginx tries another at once
        connect(path)

    worker = WorkerSocket(bind, 0, umask=0o007, backlog=16)
    assert worker.path == path
    # Reachable through filesystem rights only: gunicorn's umask 007 leaves the group in.
    assert stat.S_IMODE((tmp_path / "gunicorn.0.sock").stat().st_mode) == 0o770
    before = connect(path)
    assert waiting(worker.listener) == 1 and waiting(shared) == 0

    # Stopping: a connection made before the release still waits on the worker's own
    # socket (it serves it); new ones go to the shared socket.
    late = connect(path)
    worker.release()
    assert worker.has_waiting_connection()
    connect(path)
    assert waiting(shared) == 1 and waiting(worker.listener) == 1
    assert not worker.has_waiting_connection()
    before.close(), late.close()

    remove_slots(bind, 2)
    assert not list(tmp_path.glob("gunicorn.*.sock"))


def test_a_reload_s_new_worker_takes_the_slot_over_and_the_old_one_s_release_leaves_it(tmp_path, shared):
    bind = f"unix:{tmp_path / 'gunicorn.sock'}"
    old = WorkerSocket(bind, 0, umask=0o007, backlog=16)
    new = WorkerSocket(bind, 0, umask=0o007, backlog=16)
    connect(new.path)
    assert waiting(new.listener) == 1 and waiting(old.listener) == 0
    old.release()
    connect(new.path)
    assert waiting(new.listener) == 1 and waiting(shared) == 0


def test_a_worker_stopping_after_the_master_removes_its_path(tmp_path, shared):
    bind = f"unix:{tmp_path / 'gunicorn.sock'}"
    worker = WorkerSocket(bind, 0, umask=0o007, backlog=16)
    (tmp_path / "gunicorn.sock").unlink()  # the master closed and unlinked its socket first
    worker.release()
    assert not (tmp_path / "gunicorn.0.sock").exists()


def caps(lines: str) -> list[int]:
    return [int(cap) for cap in re.findall(r"max_conns=(\d+);", lines)]


def test_nginx_lists_every_worker_s_socket_and_shares_the_in_flight_cap_out():
    servers = upstream_servers("unix:/run/keras-fleet/gunicorn.sock", 2, in_flight=7)
    assert re.findall(r"server (\S+) max_fails=0", servers) == [
        "unix:/run/keras-fleet/gunicorn.0.sock", "unix:/run/keras-fleet/gunicorn.1.sock"]
    assert caps(servers) == [4, 3]
    assert caps(upstream_servers("unix:/run/gunicorn.sock", 4, in_flight=2)) == [1, 1, 1, 1]
    assert "max_conns" not in upstream_servers("unix:/run/gunicorn.sock", 2)
    # A TCP bind: gunicorn's one address, with the whole cap.
    assert upstream_servers("127.0.0.1:8000", 2, in_flight=32) == "    server 127.0.0.1:8000 max_fails=0 max_conns=32;"
