#!/usr/bin/env python3
"""`make bench`: Keras Fleet side by side with the floor, the naive server and the raw model.

For two models (the demo `digits`, overhead-bound; MobileNetV2 224x224x3 with random
weights, compute-bound) it runs, back to back, each system behind the same nginx and
gunicorn configuration, under the same wrk load (connections, duration), floor and
fleet (and, for the image model, minimal) alternating for a few rounds:

    floor    Flask-RESTful answering a constant: the HTTP stack alone
    naive    Flask-RESTful calling model.predict per request (the usual guide)
    fleet    Keras Fleet as `make up` runs it
    minimal  the least a model server does on this stack: parse the body, call the
             model as the fleet does, answer; nothing checked, joined, counted or logged
    raw      the model called in-process: best batch size, best processes x threads split
             (each process on its share of the cores, as the fleet's workers are)

then, with wrk too, the fleet's capacity (closed loop) and an open-loop Poisson rate at
70% of it (tail latency) and at 2x it (load shedding: accepted and shed answers
counted apart); the floor the same way, for reference.
Each HTTP row also has the whole machine's CPU per request (wrk's included), raw its
CPU per sample; with the floor's, that bounds what fleet / raw can be on this stack
(minimal / raw measures that bound, the model's own slowdown inside a server included).
Writes reports/bench.json and reports/bench.md. Ratios, not absolute numbers, are the
point: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

import ideal_queue
from api.affinity import worker_cores
from localstack import LocalStack

REPO = Path(__file__).resolve().parent.parent
REPORTS = REPO / "reports"
WRK_SCRIPT = Path(__file__).with_name("bench_wrk.lua")
# The systems behind nginx + gunicorn, as gunicorn's app argument (scripts/bench_apps.py).
APPS = {"floor": "bench_apps:floor()", "naive": "bench_apps:naive()", "fleet": "api.wsgi:app",
        "minimal": "bench_apps:minimal()"}
# The share of capacity the tail latency target is stated at.
TAIL_LOAD = 0.7
# The demo model (the small one), and the values an image body can carry.
SMALL_MODEL = "models/digits.keras"
IMAGE_DTYPES = ("float32", "uint8")


# --- the models --------------------------------------------------------------------------


def image_model(path: Path = REPORTS / "mobilenet_v2.keras") -> Path:
    """MobileNetV2 at 224x224x3 with random weights, built here (nothing downloaded)."""
    if not path.exists():
        import keras

        keras.utils.set_random_seed(0)
        image = keras.Input((224, 224, 3), name="image")
        path.parent.mkdir(parents=True, exist_ok=True)  # reports/ on a fresh checkout, whichever script builds it first
        keras.applications.MobileNetV2(weights=None, input_tensor=image).save(path)
    return path


def request_body(model: str, directory: Path, image_dtype: str = "float32") -> tuple[Path, str]:
    """One request's body for the model: JSON for digits, a .npy image for MobileNetV2:
    ``image_dtype`` float32 (a tensor in [0, 1), 600 KB) or uint8 (pixels, 150 KB, which
    the server casts to the model's float32 input)."""
    if model == "small":
        from sklearn.datasets import load_digits

        path = directory / "small.json"
        path.write_text(json.dumps({"instances": [load_digits().images[0].tolist()]}))
        return path, "application/json"
    path = directory / f"image_{image_dtype}.npy"
    rng = np.random.default_rng(0)
    if image_dtype == "uint8":
        image = rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    else:
        image = rng.uniform(0, 1, (1, 224, 224, 3)).astype(np.float32)
    np.save(path, image)
    return path, "application/x-npy"


# --- load generators ----------------------------------------------------------------------


def machine_busy_seconds() -> float:
    """CPU seconds this machine has spent working since boot, all cores (``/proc/stat``:
    user, nice, system, irq and softirq; not idle, I/O wait or time stolen by the host)."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, stat.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU seconds (user and system) of this process's children that have ended."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(url: str, body: Path, content_type: str, connections: int, seconds: float, rate: float = 0.0,
        track: bool = False, arrivals: str = "poisson") -> dict:
    """Load from wrk: a closed loop (``rate`` 0: each connection sends as soon as it is
    answered), or an open-loop schedule of ``rate`` requests/s in all, with at most one
    request outstanding per connection (scripts/bench_wrk.lua); ``arrivals`` spaces it:
    ``poisson`` (random gaps) or ``even``. ``track`` counts the answers by status, with
    the latency of the accepted ones: each request then passes through the script, which
    costs the client a copy of the body per request (wrk copies a request the script
    builds into the connection's own buffer: ~150 us for a 600 KB image, cache-cold)."""
    threads = min(2, connections)
    connections -= connections % threads
    env = dict(os.environ, BENCH_BODY=str(body), BENCH_CONTENT_TYPE=content_type, BENCH_RATE=str(rate),
               BENCH_TRACK="1" if track else "0", BENCH_ARRIVALS=arrivals,
               BENCH_THREADS=str(threads))
    busy_before, wrk_before = machine_busy_seconds(), children_cpu_seconds()
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--timeout", "10s",
         "-s", str(WRK_SCRIPT), url],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    busy = machine_busy_seconds() - busy_before
    # wrk is the one child reaped meanwhile (the stack's processes live on).
    wrk_cpu = children_cpu_seconds() - wrk_before
    raw = json.loads(next(line[6:] for line in out.splitlines() if line.startswith("BENCH ")))
    seconds_run = raw["duration_us"] / 1e6
    # Cores busy during the run: the load generator's own, and the rest of the machine
    # (nginx, gunicorn, the kernel's network work): what the server side had to work with.
    cores = {"load_generator_cores": round(wrk_cpu / seconds_run, 3),
             "server_side_cores": round(max(busy - wrk_cpu, 0.0) / seconds_run, 3)}
    result = {
        "requests_per_s": round(raw["requests"] / seconds_run, 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": raw["errors_status"] + raw["errors_socket"],
        "requests": raw["requests"],
        # The whole machine's CPU per request: server, nginx, kernel and wrk itself.
        "cpu_us_per_request": round(1e6 * busy / max(raw["requests"], 1), 1),
        **cores,
    }
    if track:
        # Counted by the script per status.
        statuses = {int(status): count for status, count in raw["statuses"].items()}
        ok = sum(count for status, count in statuses.items() if 200 <= status < 300)
        shed = statuses.get(503, 0)
        result = {
            "offered_per_s": round(rate, 1),
            "answered_per_s": round(sum(statuses.values()) / seconds_run, 1),
            "goodput_per_s": round(ok / seconds_run, 1),
            "shed_503": shed,
            "other_errors": sum(statuses.values()) - ok - shed + raw["errors_socket"],
            "p50_ms": raw["ok_p50_us"] / 1000 if ok else None,
            "p99_ms": raw["ok_p99_us"] / 1000 if ok else None,
            **cores,
        }
    elif rate > 0:
        # An open loop: what was offered, and what of it wrk saw answered below 400 (its
        # own count, without a script call per request: the 2x run's goodput, with the
        # client as light as in the capacity runs it is compared with).
        result.update(offered_per_s=round(rate, 1), answered_per_s=result["requests_per_s"],
                      goodput_per_s=round((raw["requests"] - raw["errors_status"]) / seconds_run, 1),
                      status_errors=raw["errors_status"], socket_errors=raw["errors_socket"])
    return result


# --- the systems --------------------------------------------------------------------------


def system_env(model_path: Path, system: str) -> dict[str, str]:
    """The settings ``system`` runs with: the model, and TensorFlow's start-up lines off;
    the naive server's workers unpinned, as the guides run them (and its TensorFlow
    spreads each call over every core)."""
    env = {"MODEL_PATH": str(model_path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return {**env, "WORKER_CPU_AFFINITY": "off"} if system == "naive" else env


class Server:
    """One system behind nginx + gunicorn, started and warmed up for a measurement, stopped after.

    The warm-up is the measurement's own load (body, connections) for ``args.warmup`` seconds.
    """

    def __init__(self, app: str, env: dict[str, str], body: Path, content_type: str, args):
        self.app, self.env, self.port = app, env, args.port
        self.warmup = (body, content_type, args.connections, args.warmup)

    def __enter__(self) -> "Server":
        # The settings are this stack's alone: the caller's environment is left as it
        # was, so two systems started side by side (scripts/bench_ab.py) keep their own.
        self.stack = LocalStack(Path(tempfile.mkdtemp(prefix="bench-")), "127.0.0.1", self.port, self.port + 1,
                                self.app, env=self.env)
        self.processes = self.stack.start(foreground=False)
        try:
            self.stack.wait_ready(self.processes, timeout=180)
            wrk(self.url, *self.warmup)
        except BaseException:  # a system that fails to start must not leave its nginx behind
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.stack.stop({"gunicorn": self.processes[0].pid, "nginx": self.processes[1].pid})
        finally:
            # Its run directory holds nginx's access log, ~100 MB after one benchmark load:
            # kept, every run would leave that in /tmp. A failed start's error quotes the logs.
            shutil.rmtree(self.stack.run_dir, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/predict"


def measure_http(app: str, env: dict, body: Path, content_type: str, args) -> dict:
    """Warm up, then one wrk measurement of one system."""
    with Server(app, env, body, content_type, args) as server:
        result = wrk(server.url, body, content_type, args.connections, args.seconds)
    print(f"    {app:<22} {result['requests_per_s']:>8.1f} req/s  p50 {result['p50_ms']:.1f} ms  "
          f"p99 {result['p99_ms']:.1f} ms  errors {result['errors']}  {result['cpu_us_per_request']:.0f} us CPU/request",
          flush=True)
    return result


def _raw_worker(model_path: str, engine: str, threads: int, batch: int, seconds: float, queue,
                cores: list[int] | None = None) -> None:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if cores is not None:  # its share of the cores, as the fleet pins a worker (before any thread starts)
        os.sched_setaffinity(0, cores)
    sys.path.insert(0, str(REPO))
    from api.model import ServedModel, configure_tensorflow_threads

    configure_tensorflow_threads(threads, 1)
    model = ServedModel(model_path, "raw", engine=engine, threads=threads)
    model.load()
    feed = {t.name: np.random.default_rng(0).uniform(0, 1, (batch,) + t.instance_shape).astype(t.dtype)
            for t in model.signature.inputs}
    model.predict(feed)
    started, cpu_started, samples = time.perf_counter(), time.process_time(), 0
    while time.perf_counter() - started < seconds:
        model.predict(feed)
        samples += batch
    # process_time counts every thread of the process (the interpreter's pool included).
    queue.put((samples / (time.perf_counter() - started), model.engine, time.process_time() - cpu_started, samples,
               sorted(os.sched_getaffinity(0))))


def _raw_rate(model_path: Path, engine: str, processes: int, threads: int, batch: int,
              seconds: float) -> tuple[float, str, float]:
    """Samples/s of ``processes`` processes at once, each on its share of the cores as the
    fleet's workers are (api/affinity.py), the engine that ran, and CPU microseconds per sample."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    cores = sorted(os.sched_getaffinity(0))
    workers = [context.Process(target=_raw_worker, args=(str(model_path), engine, threads, batch, seconds, queue,
                                                         worker_cores(slot, processes, cores)))
               for slot in range(processes)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    cpu_us_per_sample = 1e6 * sum(result[2] for result in results) / max(sum(result[3] for result in results), 1)
    return sum(result[0] for result in results), results[0][1], cpu_us_per_sample


def measure_raw(model_path: Path, batches: list[int], sweep_seconds: float, seconds: float, engine: str = "auto",
                splits: list[tuple[int, int]] | None = None) -> dict:
    """The compute ceiling: samples/s in-process at the best split of the cores and batch size.

    The model runs as the fleet runs it (``engine`` as INFERENCE_ENGINE). A short run
    of each split and batch size finds the best; that one is then measured as long as
    the HTTP systems are (the largest of several short noisy runs would overstate the
    ceiling).
    """
    cores = os.cpu_count() or 1
    if splits is None:
        splits = sorted({(cores, 1), (1, cores)} | ({(2, cores // 2)} if cores >= 4 else set()))
    results = []
    for processes, threads in splits:
        for batch in batches:
            rate, ran, _ = _raw_rate(model_path, engine, processes, threads, batch, sweep_seconds)
            results.append({"processes": processes, "threads": threads, "batch": batch, "samples_per_s": round(rate, 1)})
            print(f"    raw ({ran}) {processes} proc x {threads} thr, batch {batch:>3}: {rate:8.1f} samples/s", flush=True)
    best = dict(max(results, key=lambda r: r["samples_per_s"]))
    rate, ran, cpu_us = _raw_rate(model_path, engine, best["processes"], best["threads"], best["batch"], seconds)
    best["samples_per_s"] = round(rate, 1)
    print(f"    raw ({ran}) at the best, measured for {seconds:.0f} s: {best['samples_per_s']:8.1f} samples/s, "
          f"{cpu_us:.1f} us CPU per sample", flush=True)
    return {"best": best, "all": results, "samples_per_s": best["samples_per_s"], "engine": ran,
            "cpu_us_per_sample": round(cpu_us, 2)}


def mean_of_rounds(rounds: list[dict]) -> dict:
    """One system's wrk results over several rounds: mean rates and latencies, summed counts."""
    combined = {key: round(float(np.mean([r[key] for r in rounds])), 3)
                for key in ("requests_per_s", "p50_ms", "p99_ms", "cpu_us_per_request")}
    combined.update(errors=sum(r["errors"] for r in rounds), requests=sum(r["requests"] for r in rounds),
                    rounds=[r["requests_per_s"] for r in rounds])
    return combined


# --- the run ------------------------------------------------------------------------------


def bench_model(name: str, model_path: Path, work: Path, args) -> dict:
    """floor, naive, fleet (minimal for the image model) and raw for one model."""
    body, content_type = request_body(name, work, args.image_dtype)
    print(f"{name} model ({model_path.name}), {content_type}, {args.connections} connections:", flush=True)
    # floor and fleet alternate for --rounds rounds: this shared machine's speed drifts
    # over minutes, and the ratio should compare the two at the same moments. Where the
    # model dominates, the least any model server does on this stack (parse, call the
    # model as the fleet does, answer) alternates with them: the most fleet / raw can be
    # here, measured rather than added up.
    alternating = ("floor", "fleet", "minimal") if name == "image" else ("floor", "fleet")
    rounds: dict[str, list[dict]] = {system: [] for system in alternating}
    naive = measure_http(APPS["naive"], system_env(model_path, "naive"), body, content_type, args)
    for _ in range(args.rounds):
        for system in alternating:
            rounds[system].append(measure_http(APPS[system], system_env(model_path, system), body, content_type, args))
    rows = {"floor": mean_of_rounds(rounds["floor"]), "naive": naive,
            **{system: mean_of_rounds(rounds[system]) for system in alternating if system != "floor"}}
    for row in rows.values():
        row["samples_per_s"] = row["requests_per_s"]  # one instance per request
    rows["raw"] = measure_raw(model_path, args.raw_batches[name], args.raw_seconds, args.seconds)
    if name == "image" and rows["raw"]["engine"] != "tensorflow":
        # TensorFlow's own ceiling too, at the split the issue found best for it: what
        # the fleet would be measured against by someone calling the model in Keras.
        cores = os.cpu_count() or 1
        rows["raw_tensorflow"] = measure_raw(model_path, [1, 8], args.raw_seconds, args.seconds,
                                             engine="tensorflow", splits=[(cores, 1)])
    return {"model": model_path.name, "content_type": content_type, "systems": rows}


def tail_latency(url: str, body: Path, content_type: str, args) -> dict:
    """Capacity (closed loop), unloaded p50 (one client), then p50/p99 at 70% of capacity.

    The 70% run is an open-loop schedule over the same connections: a steady rate with
    random gaps, as independent clients would send (``args.arrivals``: or even gaps).
    """
    capacity = wrk(url, body, content_type, args.connections, args.seconds)
    unloaded = wrk(url, body, content_type, 1, args.seconds / 2)
    at_70 = wrk(url, body, content_type, args.connections, args.seconds, rate=TAIL_LOAD * capacity["requests_per_s"],
                 arrivals=args.arrivals)
    return {
        "capacity_per_s": capacity["requests_per_s"],
        "capacity_errors": capacity["errors"],
        "unloaded_p50_ms": unloaded["p50_ms"],
        "at_70_percent": at_70,
        "p99_at_70_over_unloaded_p50": round(at_70["p99_ms"] / unloaded["p50_ms"], 2),
    }


def overload(name: str, url: str, body: Path, content_type: str, capacity: float, args,
             accepted_latency: bool = True) -> dict:
    """Goodput at 2x ``capacity`` (open loop), against capacity measured again right after;
    the same per core left to the server side, with the load generator's cores; and, when
    ``accepted_latency``, a second 2x run that times the accepted answers apart from the shed.

    Goodput comes from wrk's own counts, the client as light as in the capacity runs: the
    run that tells accepted answers from shed ones costs wrk ~2x the CPU per image request
    (a copy of the body per request), which the capacity it is compared with never paid.
    """
    # Enough connections that the offered rate holds while answers are slow: at most
    # one request is outstanding on each.
    at_2x = wrk(url, body, content_type, args.overload_connections, args.seconds, rate=2.0 * capacity,
                arrivals=args.arrivals)
    # Capacity again, right after: the machine's speed drifts over minutes, and
    # goodput is compared with what the stack could do around the same time.
    after = wrk(url, body, content_type, args.connections, args.seconds)
    capacity_after = after["requests_per_s"]
    around = (capacity + capacity_after) / 2
    # A machine that stalled during one of the two leaves the 2x rate wrong: say so.
    steady = abs(capacity - capacity_after) <= 0.2 * around
    if not steady:
        print(f"  WARNING {name}: capacity {capacity}/s before the 2x run, {capacity_after}/s after: the machine's "
              "speed changed; rerun for a trustworthy overload row", flush=True)
    row = {
        "at_2x": at_2x,
        "capacity_after_2x_per_s": capacity_after,
        "capacity_steady": steady,
        "capacity_after_2x": after,
        "goodput_over_capacity": round(at_2x["goodput_per_s"] / around, 3),
        # The same, per core the server side had (the machine's busy cores less the load
        # generator's): at 2x, wrk sends twice the requests on the same two cores, so
        # the server keeps fewer cores than at capacity. This says whether refusing the
        # excess made the server itself less efficient, or the load generator took the cores.
        "goodput_per_server_core_over_capacity": round(
            (at_2x["goodput_per_s"] / max(at_2x["server_side_cores"], 1e-9))
            / (capacity_after / max(after["server_side_cores"], 1e-9)), 3),
    }
    if accepted_latency:
        # Each answer by status, the accepted ones timed: their p99 against the deadline.
        tracked = wrk(url, body, content_type, args.overload_connections, args.seconds, rate=2.0 * capacity,
                      track=True, arrivals=args.arrivals)
        # Its goodput too, for comparison: the same load with the heavier client.
        row.update(at_2x_tracked=tracked, goodput_tracked_over_capacity=round(tracked["goodput_per_s"] / around, 3))
    return row


def bench_latency_and_overload(name: str, model_path: Path, work: Path, args) -> dict:
    """The fleet's tail latency at 70% load and its goodput at 2x capacity; the floor's
    the same way, for reference: what the HTTP stack alone keeps on this machine."""
    body, content_type = request_body(name, work, args.image_dtype)
    with Server(APPS["floor"], system_env(model_path, "floor"), body, content_type, args) as server:
        floor = tail_latency(server.url, body, content_type, args)
        # The floor sheds as the fleet does (nginx's cap on predictions in flight), so its
        # goodput says what refusing the excess costs this machine, load generator included.
        floor.update(overload(f"{name} floor", server.url, body, content_type, floor["capacity_per_s"], args,
                              accepted_latency=False))
    with Server(APPS["fleet"], system_env(model_path, "fleet"), body, content_type, args) as server:
        deadline_ms = server.stack.config.request_deadline_ms  # the fleet's, as its settings make it
        result = tail_latency(server.url, body, content_type, args)
        result.update(overload(name, server.url, body, content_type, result["capacity_per_s"], args))
    at_2x, tracked = result["at_2x"], result["at_2x_tracked"]
    result.update({
        "model": model_path.name,
        "floor_reference": floor,
        "deadline_ms": deadline_ms,
        "accepted_p99_within_deadline": tracked["p99_ms"] is not None and tracked["p99_ms"] <= deadline_ms,
    })
    print(f"  {name}: unloaded p50 {result['unloaded_p50_ms']:.2f} ms; at 70%: p99 {result['at_70_percent']['p99_ms']} ms "
          f"(floor at 70% of its capacity: {floor['p99_at_70_over_unloaded_p50']}x its unloaded p50); at 2x: goodput "
          f"{at_2x['goodput_per_s']}/s, {result['goodput_over_capacity']} of capacity (floor: "
          f"{floor['goodput_over_capacity']}), {at_2x['status_errors']} refused; tracked: {tracked['goodput_per_s']}/s, "
          f"{tracked['shed_503']} shed, {tracked['other_errors']} other errors, accepted p99 {tracked['p99_ms']} ms; per "
          f"server-side core {result['goodput_per_server_core_over_capacity']} of capacity (wrk "
          f"{result['capacity_after_2x']['load_generator_cores']} cores at capacity, "
          f"{at_2x['load_generator_cores']} at 2x)", flush=True)
    return result


def ratios(results: dict) -> dict:
    """The ratios the targets are stated in."""
    small, image = results["small"]["systems"], results["image"]["systems"]
    return {
        "small_fleet_vs_floor": round(small["fleet"]["requests_per_s"] / small["floor"]["requests_per_s"], 3),
        "small_fleet_vs_naive": round(small["fleet"]["requests_per_s"] / max(small["naive"]["requests_per_s"], 0.1), 1),
        "image_fleet_vs_raw": round(image["fleet"]["samples_per_s"] / image["raw"]["samples_per_s"], 3),
        **({"image_fleet_vs_raw_tensorflow": round(image["fleet"]["samples_per_s"] / image["raw_tensorflow"]["samples_per_s"], 3)}
           if "raw_tensorflow" in image else {}),
        "image_fleet_vs_naive": round(image["fleet"]["samples_per_s"] / max(image["naive"]["samples_per_s"], 0.1), 2),
        "image_fleet_vs_raw_bound": http_bound(image, results["machine"]["cores"]),
        **({"image_minimal_vs_raw": round(image["minimal"]["samples_per_s"] / image["raw"]["samples_per_s"], 3),
            "image_fleet_vs_minimal": round(image["fleet"]["samples_per_s"] / image["minimal"]["samples_per_s"], 3)}
           if "minimal" in image else {}),
    }


def http_bound(systems: dict, cores: int) -> float:
    """The highest fleet / raw this machine allows through its HTTP stack.

    Serving one image costs at least the model's CPU (raw's, per sample) plus what the
    floor's whole stack costs per request (nginx, gunicorn, Flask-RESTful, the kernel and
    wrk, all sharing the cores); the fleet does all the floor does, and more. So no server
    on this stack passes ``cores / (model + floor)`` samples/s. Generous: the floor's
    cost is taken at its own capacity, where a request costs least.
    """
    per_sample = systems["raw"]["cpu_us_per_sample"] + systems["floor"]["cpu_us_per_request"]
    return round(cores * 1e6 / per_sample / systems["raw"]["samples_per_s"], 3)


def markdown(report: dict) -> str:
    """The README's benchmark table."""
    lines = ["| model | system | requests/s | samples/s | p50 ms | p99 ms | errors | CPU µs per request (sample) |",
             "|---|---|---|---|---|---|---|---|"]
    for name in ("small", "image"):
        for system, row in report[name]["systems"].items():
            if system.startswith("raw"):
                best = row["best"]
                lines.append(f"| {name} | raw, {row['engine']} ({best['processes']} proc × {best['threads']} thr, "
                             f"batch {best['batch']}) | | {row['samples_per_s']:.0f} | | | | ({row['cpu_us_per_sample']:.4g}) |")
            else:
                lines.append(f"| {name} | {system} | {row['requests_per_s']:.0f} | {row['samples_per_s']:.0f} "
                             f"| {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['errors']} | {row['cpu_us_per_request']:.0f} |")
    r = report["ratios"]
    lines += ["", "| ratio | value | target |", "|---|---|---|",
              f"| small: fleet / floor (requests/s) | {r['small_fleet_vs_floor']} | ≥ 0.85 |",
              f"| small: fleet / naive (requests/s) | {r['small_fleet_vs_naive']} | ≥ 40 |",
              f"| image: fleet / raw (samples/s; {report['image_dtype']} bodies) | {r['image_fleet_vs_raw']} "
              "| ≥ 0.85 |",
              f"| image: the most fleet / raw can be here (raw's CPU per image + the floor's per request) "
              f"| {r['image_fleet_vs_raw_bound']} | (bound) |"]
    if "image_minimal_vs_raw" in r:
        lines += [f"| image: minimal / raw (the least a model server does, on this stack: parse, call the model, "
                  f"answer) | {r['image_minimal_vs_raw']} | (bound, measured) |",
                  f"| image: fleet / minimal (samples/s) | {r['image_fleet_vs_minimal']} | (reference) |"]
    if "image_fleet_vs_raw_tensorflow" in r:
        lines.append(f"| image: fleet / raw with TensorFlow's runtime (samples/s) | {r['image_fleet_vs_raw_tensorflow']} "
                     "| (reference) |")
    arrivals = {"poisson": "Poisson", "even": "evenly spaced"}[report.get("arrivals", "poisson")]
    for name, row in report["latency"].items():
        floor = row["floor_reference"]["p99_at_70_over_unloaded_p50"]
        lines.append(f"| {name}: p99 at {TAIL_LOAD:.0%} load ({arrivals} arrivals) / unloaded p50 (floor, no model: {floor}) "
                     f"| {row['p99_at_70_over_unloaded_p50']} | ≤ 3 |")
    ideal = report["ideal_queue"]
    lines.append(f"| an ideal server here, p99 at {ideal['load']:.0%} load ({arrivals} arrivals) / unloaded "
                 f"({ideal['servers']} cores each serving one request at a time for exactly its unloaded time, "
                 f"nothing else running) | {ideal['p99_over_unloaded']} | (best case) |")
    for name, row in report["latency"].items():
        floor = row["floor_reference"]["goodput_over_capacity"]
        lines.append(f"| {name}: goodput at 2× capacity / capacity (floor, no model: {floor}; counted by the "
                     f"client that times each answer: {row['goodput_tracked_over_capacity']}) "
                     f"| {row['goodput_over_capacity']} | ≥ 0.9 |")
        lines.append(f"| {name}: the same per core left to the server side (wrk took "
                     f"{row['capacity_after_2x']['load_generator_cores']} cores at capacity, "
                     f"{row['at_2x']['load_generator_cores']} at 2×) | {row['goodput_per_server_core_over_capacity']} "
                     "| (why) |")
        lines.append(f"| {name}: accepted p99 at 2× capacity (ms) | {row['at_2x_tracked']['p99_ms']} "
                     f"| ≤ deadline {row['deadline_ms']:.0f} |")
    return "\n".join(lines) + "\n"


def add_load_arguments(parser: argparse.ArgumentParser, seconds: float) -> None:
    """The options of the wrk load every HTTP measurement shares (scripts/bench_parts.py's too)."""
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (same for every system)")
    parser.add_argument("--seconds", type=float, default=seconds, help="each measurement's duration")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured load before each measurement")
    parser.add_argument("--rounds", type=int, default=2, help="measurements of each system, alternating")
    parser.add_argument("--port", type=int, default=18080)


def set_thread_affinity(threads: dict[int, set[int]]) -> None:
    """Give each thread (by id) its cores; a thread that ended meanwhile is skipped."""
    for thread, cores in threads.items():
        try:
            os.sched_setaffinity(thread, cores)
        except (ProcessLookupError, PermissionError):
            pass


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and image body options of a script that serves one of the benchmark's models."""
    parser.add_argument("model", choices=("small", "image"), help="the demo digits model, or MobileNetV2")
    parser.add_argument("--image-dtype", choices=IMAGE_DTYPES, default="float32",
                        help="the image body's values, as `make bench --image-dtype` sends them")


def model_and_body(args, directory: Path) -> tuple[Path, Path, str]:
    """The model ``args.model`` names, and its benchmark body (written in ``directory``): path, body, content type."""
    model_path = REPO / SMALL_MODEL if args.model == "small" else image_model()
    return (model_path, *request_body(args.model, directory, args.image_dtype))


@contextlib.contextmanager
def scratch_directory(prefix: str) -> Iterator[Path]:
    """A new directory for request bodies and such, removed with what is in it on leaving."""
    with tempfile.TemporaryDirectory(prefix=prefix) as directory:
        yield Path(directory)


def write_reports(name: str, data: dict, table: str) -> None:
    """reports/<name>.json and reports/<name>.md, and the table on stdout."""
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    (REPORTS / f"{name}.md").write_text(table)
    print("\n" + table)
    print(f"wrote reports/{name}.json and reports/{name}.md")


def report_name(args) -> str:
    """reports/<this>.*: "bench", with each option that changes the load from the default's."""
    changed = [value for value, default in ((args.arrivals, "poisson"), (args.image_dtype, "float32")) if value != default]
    return "_".join(["bench", *changed])


def main() -> int:
    """Run the whole benchmark and write the reports."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_load_arguments(parser, seconds=15)
    parser.add_argument("--raw-seconds", type=float, default=5, help="each run of the raw sweep")
    parser.add_argument("--overload-connections", type=int, default=400, help="wrk connections of the 2x capacity run")
    parser.add_argument("--models", default=SMALL_MODEL, help="the small model")
    parser.add_argument("--arrivals", choices=("poisson", "even"), default="poisson",
                        help="gaps of the open-loop runs (70%% and 2x): random, as independent clients send, or "
                             "even, as wrk2's and k6's constant-rate loops send; 'even' writes reports/bench_even.*")
    parser.add_argument("--image-dtype", choices=IMAGE_DTYPES, default="float32",
                        help="the image bodies' values: a float32 tensor (600 KB), or uint8 pixels (150 KB) that the "
                             "fleet casts to the model's float32 input; 'uint8' writes reports/bench_uint8.*")
    args = parser.parse_args()
    # The image model's images/s fall past batch 8 (caches; 16 is slower already): a
    # batch of 32 cost 26 s of the run and was never the best.
    args.raw_batches = {"small": [1, 16, 64, 256], "image": [1, 8, 16]}

    models = {"small": REPO / args.models, "image": image_model()}
    started = time.time()
    cores = os.cpu_count() or 1
    report: dict = {"machine": {"cores": cores}, "connections": args.connections, "seconds": args.seconds,
                    "arrivals": args.arrivals, "image_dtype": args.image_dtype,
                    # What the p99 target is read against: the best a server could do here
                    # whose unloaded latency is its own CPU work (scripts/ideal_queue.py).
                    "ideal_queue": {"servers": cores, "load": TAIL_LOAD, "arrivals": args.arrivals,
                                    "p99_over_unloaded": ideal_queue.p99_over_service(cores, TAIL_LOAD, args.arrivals)}}
    with scratch_directory("bench-bodies-") as work:
        for name, path in models.items():
            report[name] = bench_model(name, path, work, args)
        report["ratios"] = ratios(report)
        report["latency"] = {}
        for name in ("small", "image"):
            report["latency"][name] = bench_latency_and_overload(name, models[name], work, args)
    # Overload matters where the model, not HTTP, is the bottleneck: the image model.
    report["overload"] = {"model_key": "image", **report["latency"]["image"]}
    report["ratios"]["overload_goodput_over_capacity"] = report["overload"]["goodput_over_capacity"]
    report["elapsed_s"] = round(time.time() - started)
    write_reports(report_name(args), report, markdown(report))
    print(f"in {report['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
