"""Every setting of the serving stack, read once from the environment.

Each field names its environment variable, its type (the field's annotation), its
default and one line of documentation. Nothing else in the code reads
``os.environ``; tests build a :class:`Config` from a plain dict instead.
``python -m api.config`` prints the table the README shows.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping


PREDICTION_MONITORING_CHOICES = ("auto", "classifier", "regressor", "off")
# The largest batch MAX_BATCH_SIZE=0 tries when it measures the model at start.
AUTO_BATCH_LIMIT = 64
# What runs the traced graph: LiteRT when it can (api/litert.py), else TensorFlow.
INFERENCE_ENGINES = ("auto", "litert", "tensorflow")
# How gunicorn's workers share the cores (api/affinity.py).
WORKER_CPU_AFFINITY_CHOICES = ("auto", "off")
# Who writes the line of each request: nginx's access log (api/telemetry.py), or the app as well.
REQUEST_LOG_CHOICES = ("nginx", "app")


def available_cores() -> int:
    """Return the number of CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# The cores this process could run on when the settings were first imported. In a
# gunicorn worker that is the master's set (gunicorn.conf.py imports this module): the
# worker then pins itself to its share of them, after which available_cores() would
# count only that share.
CORES = available_cores()


def setting(env: str, default: Any, doc: str) -> Any:
    """Declare one setting: its environment variable, default and documentation."""
    return dataclasses.field(default=default, metadata={"env": env, "doc": doc})


@dataclasses.dataclass(frozen=True)
class Config:
    """The typed settings of one serving process (app and gunicorn alike)."""

    # The model.
    model_path: str = setting("MODEL_PATH", "models/digits.keras", "Keras 3 `.keras` file to serve.")
    model_name: str = setting("MODEL_NAME", "", "Name in `/v1/models/<name>`; empty means the file's stem.")
    model_version: str = setting("MODEL_VERSION", "1", "Version reported by the status endpoint and `X-Model-Version`.")
    allow_unsafe_model: bool = setting(
        "ALLOW_UNSAFE_MODEL", False, "Load files that run code (Lambda layers). Only for files you trust."
    )
    # Security.
    api_keys_file: str = setting(
        "API_KEYS_FILE", "", "File of hashed API keys (scripts/api_keys.py); empty turns authentication off."
    )
    # nginx's protections (the public listener).
    rate_limit_rps: int = setting("RATE_LIMIT_RPS", 200, "Requests per second per client before 429 (0: no limit).")
    rate_limit_burst: int = setting("RATE_LIMIT_BURST", 400, "Requests a client may send above the rate at once.")
    conn_limit: int = setting("CONN_LIMIT", 200, "Open connections per client (0: no limit).")
    rate_limit_exempt: str = setting(
        "RATE_LIMIT_EXEMPT", "127.0.0.0/8", "Comma-separated CIDRs never rate limited (local tools, load tests)."
    )
    trusted_proxies: str = setting(
        "TRUSTED_PROXIES", "", "CIDRs whose X-Forwarded-For names the client (the ALB's subnets on AWS)."
    )
    client_timeout_s: int = setting(
        "CLIENT_TIMEOUT_S", 10, "Seconds nginx waits for a client's headers or next body bytes (408 after)."
    )
    # Request limits.
    max_instances: int = setting("MAX_INSTANCES", 1024, "Most instances (rows) accepted in one request.")
    max_body_bytes: int = setting(
        "MAX_BODY_BYTES", 8 * 1024 * 1024, "Largest request body, enforced by nginx and by the app (413)."
    )
    # Batching and load shedding (per worker).
    max_batch_size: int = setting(
        "MAX_BATCH_SIZE", 0, f"Most instances joined into one model call (0: measured at start, up to "
        f"{AUTO_BATCH_LIMIT}: the largest batch that still raises throughput)."
    )
    max_batch_wait_ms: float = setting(
        "MAX_BATCH_WAIT_MS", 0.0, "How long a batch waits for more requests after its first (0: take what is queued)."
    )
    batch_queue_size: int = setting("BATCH_QUEUE_SIZE", 64, "Requests waiting for the model per worker; beyond it, 503.")
    max_in_flight: int = setting(
        "MAX_IN_FLIGHT", 0,
        "Predictions nginx passes to gunicorn at once, shared out among the workers; beyond it, 503 at once "
        "(0: 2 × workers × threads).",
    )
    request_deadline_ms: int = setting(
        "REQUEST_DEADLINE_MS", 1000, "A request not answered this long after nginx received it gets 503 at once."
    )
    # gunicorn.
    workers: int = setting("WEB_CONCURRENCY", CORES, "gunicorn worker processes; each loads the model.")
    threads: int = setting("GUNICORN_THREADS", 8, "Request threads per worker (gthread); they feed the batcher.")
    worker_cpu_affinity: str = setting(
        "WORKER_CPU_AFFINITY", "auto", "`auto`: each worker runs on cores of its own, its even share, so its caches "
        "stay warm (as `off` when the workers do not split the cores evenly, or a share is smaller than "
        "`TF_INTRA_OP_THREADS`); `off`: the kernel moves workers between cores."
    )
    bind: str = setting("GUNICORN_BIND", "unix:run/gunicorn.sock", "Where gunicorn listens; nginx proxies to it.")
    timeout: int = setting("GUNICORN_TIMEOUT", 60, "Seconds a silent worker (loading or stuck) lives before it is replaced.")
    graceful_timeout: int = setting(
        "GUNICORN_GRACEFUL_TIMEOUT", 30, "Seconds in-flight requests get to finish after SIGTERM."
    )
    max_requests: int = setting(
        "GUNICORN_MAX_REQUESTS", 0, "Recycle a worker after this many requests, to bound a leak (0: never; each "
        "recycle runs the instance a worker short while the new one loads the model)."
    )
    max_requests_jitter: int = setting(
        "GUNICORN_MAX_REQUESTS_JITTER", 0, "Random spread on the recycle point so workers don't restart together "
        "(0: a tenth of GUNICORN_MAX_REQUESTS)."
    )
    # TensorFlow.
    tf_intra_op_threads: int = setting(
        "TF_INTRA_OP_THREADS", 0, "Threads per op in each worker (LiteRT's too); 0 means cores / workers."
    )
    tf_inter_op_threads: int = setting("TF_INTER_OP_THREADS", 1, "Ops run concurrently in each worker.")
    inference_engine: str = setting(
        "INFERENCE_ENGINE", "auto", "`auto` (LiteRT if the model converts and matches TensorFlow, else TensorFlow), "
        "`litert` (refuse to start otherwise) or `tensorflow`."
    )
    # Observability.
    log_level: str = setting("LOG_LEVEL", "info", "Log level of the app and gunicorn (JSON lines on stdout).")
    request_log: str = setting(
        "REQUEST_LOG", "nginx", "Who writes each request's JSON line: `nginx` (its access line, with the app's "
        "fields; the app adds its own for 5xx only, and nginx stamps `X-Request-ID`) or `app` (the app too, and it "
        "stamps `X-Request-ID` itself: for gunicorn without this nginx)."
    )
    metrics_port: int = setting("METRICS_PORT", 9101, "nginx's monitoring listener for `GET /metrics`; never public.")
    prometheus_multiproc_dir: str = setting(
        "PROMETHEUS_MULTIPROC_DIR", "", "Where workers write metrics so `/metrics` adds them up; set by the stack."
    )
    prediction_monitoring: str = setting(
        "PREDICTION_MONITORING", "auto", "`classifier`, `regressor`, `off`, or `auto` (from the output signature)."
    )
    prediction_buckets: str = setting(
        "PREDICTION_BUCKETS", "-10,-1,-0.1,0,0.1,1,10,100,1000", "Histogram buckets for a regressor's predictions."
    )

    def __post_init__(self):
        if self.prediction_monitoring not in PREDICTION_MONITORING_CHOICES:
            raise ValueError(f"PREDICTION_MONITORING must be one of {', '.join(PREDICTION_MONITORING_CHOICES)}")
        if self.inference_engine not in INFERENCE_ENGINES:
            raise ValueError(f"INFERENCE_ENGINE must be one of {', '.join(INFERENCE_ENGINES)}")
        if self.worker_cpu_affinity not in WORKER_CPU_AFFINITY_CHOICES:
            raise ValueError(f"WORKER_CPU_AFFINITY must be one of {', '.join(WORKER_CPU_AFFINITY_CHOICES)}")
        if self.request_log not in REQUEST_LOG_CHOICES:
            raise ValueError(f"REQUEST_LOG must be one of {', '.join(REQUEST_LOG_CHOICES)}")
        self.prediction_bucket_values  # noqa: B018 (parse now, so a typo fails at start)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Config":
        """Build the config from environment variables, then apply keyword overrides.

        Raises ``ValueError`` naming the variable when a value has the wrong type.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            env = field.metadata["env"]
            if env in environ:
                values[field.name] = _parse(env, environ[env], field.type)
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> "Config":
        """Build the config from a dict keyed by field or variable name (tests use this)."""
        by_env = {f.metadata["env"]: f.name for f in dataclasses.fields(cls)}
        overrides = {by_env.get(key, key): value for key, value in (mapping or {}).items()}
        return cls.from_env(environ={}, **overrides)

    @property
    def served_name(self) -> str:
        """The model's name on the wire: ``MODEL_NAME`` or the file's stem."""
        return self.model_name or Path(self.model_path).stem

    @property
    def rate_limit_exempt_cidrs(self) -> list[str]:
        """RATE_LIMIT_EXEMPT as a list."""
        return _comma_list(self.rate_limit_exempt)

    @property
    def trusted_proxy_cidrs(self) -> list[str]:
        """TRUSTED_PROXIES as a list."""
        return _comma_list(self.trusted_proxies)

    @property
    def prediction_bucket_values(self) -> tuple[float, ...]:
        """PREDICTION_BUCKETS as sorted floats."""
        try:
            return tuple(sorted(float(edge) for edge in self.prediction_buckets.split(",")))
        except ValueError:
            raise ValueError(f"PREDICTION_BUCKETS must be comma-separated numbers, got {self.prediction_buckets!r}") from None

    @property
    def in_flight_limit(self) -> int:
        """MAX_IN_FLIGHT, or twice what gunicorn's threads can work on at once.

        Requests past what the threads hold wait inside gunicorn, where the batcher's
        deadline check cannot see them; the margin absorbs bursts at normal load.
        """
        return self.max_in_flight or 2 * max(1, self.workers) * max(1, self.threads)

    @property
    def intra_op_threads(self) -> int:
        """Threads per op (TensorFlow's or LiteRT's), so that workers x threads is about the core count."""
        return self.tf_intra_op_threads or max(1, CORES // max(1, self.workers))


def _parse(env: str, raw: str, type_name: str) -> Any:
    parsers = {"int": (int, "an integer"), "float": (float, "a number"), "bool": (_boolean, "true or false")}
    if type_name not in parsers:
        return raw
    parse, expected = parsers[type_name]
    try:
        return parse(raw)
    except ValueError:
        raise ValueError(f"{env} must be {expected}, got {raw!r}") from None


def _comma_list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)


def markdown_table() -> str:
    """Return the settings as the markdown table shown in the README."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for field in dataclasses.fields(Config):
        default = f"`{field.default}`" if field.default != "" else "(empty)"
        if field.name == "workers":
            default = "number of cores"
        rows.append(f"| `{field.metadata['env']}` | {default} | {field.metadata['doc']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
