"""A request body read whole from gunicorn's socket (api/whole_body.py).

Real unix socket pairs and gunicorn's own request parser: the client end sends HTTP
requests, gunicorn parses their headers, WholeBody reads their bodies. End to end, every
e2e test's request body goes through it (api.worker_sockets.SlotThreadWorker).
"""

from __future__ import annotations

import os
import socket
import threading

import pytest
from gunicorn.config import Config
from gunicorn.http.parser import RequestParser

from api.whole_body import WholeBody


def request(body: bytes, path: str = "/predict") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body)


@pytest.fixture
def connection():
    """(the client's end, gunicorn's parser over the server's end)."""
    client, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield client, RequestParser(Config(), server, ("local", 0))
    client.close()
    server.close()


def send_in_background(sock: socket.socket, data: bytes) -> threading.Thread:
    sender = threading.Thread(target=sock.sendall, args=(data,))
    sender.start()
    return sender


def test_a_large_body_is_read_whole_and_the_next_request_on_the_connection_follows(connection):
    client, parser = connection
    body = os.urandom(3 * 1024 * 1024 + 7)  # far more than a socket buffer holds at once
    sender = send_in_background(client, request(body) + request(b'{"n": 2}', "/second"))
    first = next(parser)
    assert WholeBody(first.body).read() == body
    sender.join()
    assert parser.finish_body() is True  # nothing of the body left behind
    second = next(parser)
    assert second.path == "/second"
    assert WholeBody(second.body).read() == b'{"n": 2}'


def test_a_body_that_came_with_the_headers_leaves_a_pipelined_request_to_gunicorn(connection):
    client, parser = connection
    client.sendall(request(b"first body") + request(b"second body", "/second"))
    assert WholeBody(next(parser).body).read() == b"first body"
    second = next(parser)
    assert (second.path, WholeBody(second.body).read()) == ("/second", b"second body")


def test_reading_in_pieces_lines_or_into_a_buffer_gives_the_same_bytes(connection):
    client, parser = connection
    body = b"line one\nline two\n" + os.urandom(300_000)
    sender = send_in_background(client, request(body))
    stream = WholeBody(next(parser).body)
    start = stream.readline() + stream.readline(4)
    buffer = bytearray(1000)
    got = stream.readinto(buffer)
    rest = stream.read(5000) + b"".join(iter(stream))
    sender.join()
    assert start + bytes(buffer[:got]) + rest == body
    assert stream.read() == b""


def test_a_client_that_leaves_early_gives_a_short_body_and_the_connection_is_not_reused(connection):
    client, parser = connection
    client.sendall(request(b"x" * 100_000)[:-40_000])
    client.shutdown(socket.SHUT_WR)
    stream = WholeBody(next(parser).body)
    assert len(stream.read()) == 60_000
    assert stream.failed


def test_a_chunked_body_is_left_to_gunicorn_s_reader(connection):
    client, parser = connection
    client.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert WholeBody(next(parser).body).read() == b"hello world"
