#!/usr/bin/env python3
"""Fill the @NAME@ placeholders of an nginx template (deploy/nginx/*.conf).

nginx's own `$variables` stay untouched. Used by the local stack and by the image's
provisioning, so both run the same site file with values from the same settings
(api/config.py, read from the environment):

    python scripts/render_nginx.py deploy/nginx/keras-fleet.conf --listen 80 --metrics-listen 9101 \
        --upstream unix:/run/keras-fleet/gunicorn.sock --access-log /var/log/nginx/keras-fleet.access.log \
        --headers-file /etc/nginx/snippets/keras-fleet-headers.conf > /etc/nginx/sites-available/keras-fleet.conf

--upstream is gunicorn's bind (GUNICORN_BIND); for a unix socket, nginx's upstreams list
each worker's own socket beside it (api/worker_sockets.py), one per WEB_CONCURRENCY.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from api.worker_sockets import worker_socket_path

PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


def render(template: str, values: dict[str, object]) -> str:
    """Replace every @NAME@ with values[NAME]; raise ValueError naming any that is missing."""
    missing = sorted(set(PLACEHOLDER.findall(template)) - set(values))
    if missing:
        raise ValueError(f"no value for placeholder(s): {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), template)


def upstream_servers(upstream: str, workers: int, in_flight: int = 0) -> str:
    """The `server` lines of an upstream block: each gunicorn worker's own socket
    (api/worker_sockets.py), or the one address of a TCP bind.

    ``in_flight``, if given, caps requests in flight, shared out as evenly as whole
    numbers allow (7 over 2 workers: 4 and 3; each worker at least 1).
    """
    sockets = [worker_socket_path(upstream, slot) for slot in range(workers)]
    servers = [f"unix:{path}" for path in sockets] if all(sockets) else [upstream]
    lines = []
    for index, server in enumerate(servers):
        cap = f" max_conns={max(1, in_flight // len(servers) + (index < in_flight % len(servers)))}" if in_flight else ""
        lines.append(f"    server {server} max_fails=0{cap};")
    return "\n".join(lines)


def site_values(config, *, listen: str, metrics_listen: str, upstream: str, access_log: str,
                error_log: str, headers_file: str) -> dict[str, object]:
    """Every placeholder of deploy/nginx/keras-fleet.conf, from the stack's settings (api.config.Config).

    The addresses and paths differ between a local run and a VM; everything else comes
    from the same settings the app reads, so the two cannot drift apart.
    """
    rate = config.rate_limit_rps
    real_ip = [f"set_real_ip_from {cidr};" for cidr in config.trusted_proxy_cidrs]
    if real_ip:
        real_ip += ["real_ip_header X-Forwarded-For;", "real_ip_recursive on;"]
    return {
        "LISTEN": listen,
        "METRICS_LISTEN": metrics_listen,
        "WORKERS": upstream_servers(upstream, config.workers),
        "PREDICT_WORKERS": upstream_servers(upstream, config.workers, in_flight=config.in_flight_limit),
        "ACCESS_LOG": access_log,
        "ERROR_LOG": error_log,
        "HEADERS_FILE": headers_file,
        "MAX_BODY_BYTES": config.max_body_bytes,
        "PROXY_TIMEOUT": config.timeout,
        "CLIENT_TIMEOUT_S": config.client_timeout_s,
        "REAL_IP": "\n".join(real_ip) or "# (no trusted proxies: the peer's address is the client)",
        "RATE_LIMIT_EXEMPT": "\n".join(f"    {cidr} 1;" for cidr in config.rate_limit_exempt_cidrs),
        # The zone needs a rate even when limiting is off; it is then never used.
        "RATE_LIMIT_ZONE_RPS": rate or 1,
        "RATE_LIMIT_RPS": rate,
        "RATE_LIMIT_BURST": config.rate_limit_burst,
        "CONN_LIMIT": config.conn_limit,
        "LIMIT_REQ": f"limit_req zone=keras_fleet_rate burst={config.rate_limit_burst} nodelay;" if rate
        else "# (RATE_LIMIT_RPS=0: no rate limit)",
        "LIMIT_CONN": f"limit_conn keras_fleet_conn {config.conn_limit};" if config.conn_limit
        else "# (CONN_LIMIT=0: no connection limit)",
    }


def main(argv: list[str]) -> int:
    """CLI: render the site template with the settings in the environment, to standard output."""
    import argparse

    from api.config import Config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("template", type=Path)
    for option in ("--listen", "--metrics-listen", "--upstream", "--access-log", "--error-log", "--headers-file"):
        parser.add_argument(option, required=True)
    args = parser.parse_args(argv)
    try:
        values = site_values(Config.from_env(), listen=args.listen, metrics_listen=args.metrics_listen,
                             upstream=args.upstream, access_log=args.access_log, error_log=args.error_log,
                             headers_file=args.headers_file)
        sys.stdout.write(render(args.template.read_text(), values))
    except ValueError as exc:
        print(f"render_nginx: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
