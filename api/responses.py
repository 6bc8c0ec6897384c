"""JSON responses, written out at the cost of the bytes they carry.

werkzeug's Response builds a ``Headers`` object when made and, when called, copies
and checks it: about 10 us a response on this machine, more than the digits model's
share of a batched call (side by side, answering predictions this way served 7% more
requests/s: docs/benchmark-history.md). A JSON answer of ours has nothing to work out
(a status, its type, its length, perhaps a header or two), so :class:`EncodedJSON` hands
the server those at once and builds werkzeug's parts only if something reads them.
"""

from __future__ import annotations

from typing import Callable, Iterable

import orjson
from flask import Response
from werkzeug.http import HTTP_STATUS_CODES

JSON_TYPE = "application/json"

# Status lines as werkzeug writes them ("429 TOO MANY REQUESTS").
STATUS_LINES = {code: f"{code} {reason.upper()}" for code, reason in HTTP_STATUS_CODES.items()}


class EncodedJSON(Response):
    """A response whose body is JSON already encoded, with ``headers`` besides its type and length.

    Until something reads an attribute of werkzeug's (``headers``, ``status_code``,
    ``get_data()``, ...), it holds only what it was given, and calling it hands the
    server just that. The first such read makes it a whole werkzeug Response (its
    ``__init__`` runs then), which it then behaves as in every way.
    """

    def __init__(self, body: bytes, status: int = 200, headers: list[tuple[str, str]] | None = None):
        # werkzeug's __init__ is deferred (see above); these names are not werkzeug's.
        self.__dict__.update(_encoded=(body, status, headers or []), _whole=False)

    def __getattr__(self, name: str):
        # Reached only for attributes werkzeug's __init__ would have set.
        if name.startswith("__") or self.__dict__.get("_whole", True):
            raise AttributeError(name)
        self.__dict__["_whole"] = True
        body, status, headers = self._encoded
        Response.__init__(self, body, status=status, headers=headers, content_type=JSON_TYPE)
        return getattr(self, name)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """Answer through WSGI (as werkzeug's does, once anything of werkzeug's was read)."""
        if self._whole:
            return super().__call__(environ, start_response)
        body, status, headers = self._encoded
        start_response(STATUS_LINES.get(status) or f"{status} UNKNOWN",
                       [("Content-Type", JSON_TYPE), ("Content-Length", str(len(body))), *headers])
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def json_response(data, code: int = 200, headers=None) -> Response:
    """``data`` as a JSON response (orjson writes numpy arrays directly, without a .tolist() detour)."""
    body = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)
    pairs = list(headers.items() if hasattr(headers, "items") else headers or [])  # a dict, Headers or pairs
    return EncodedJSON(body, status=code, headers=pairs)
