"""What `make bench` writes: its bodies, its table and the names of its reports."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

import bench


def http_row(requests_per_s: float) -> dict:
    return {"requests_per_s": requests_per_s, "samples_per_s": requests_per_s, "p50_ms": 4.0, "p99_ms": 12.0,
            "errors": 0, "cpu_us_per_request": 500.0}


def raw_row(samples_per_s: float) -> dict:
    return {"best": {"processes": 2, "threads": 1, "batch": 1}, "engine": "litert", "samples_per_s": samples_per_s,
            "cpu_us_per_sample": 6000.0}


def latency_row(p99_ratio: float, goodput: float) -> dict:
    return {"p99_at_70_over_unloaded_p50": p99_ratio, "goodput_over_capacity": goodput,
            "goodput_per_server_core_over_capacity": 0.95, "deadline_ms": 1000.0,
            "goodput_tracked_over_capacity": round(goodput - 0.02, 3),
            "at_2x": {"load_generator_cores": 0.3}, "at_2x_tracked": {"p99_ms": 25.0},
            "capacity_after_2x": {"load_generator_cores": 0.1},
            "floor_reference": {"p99_at_70_over_unloaded_p50": 12.3, "goodput_over_capacity": 0.87}}


@pytest.fixture
def report() -> dict:
    systems = {"floor": http_row(3800), "naive": http_row(37), "fleet": http_row(3300), "raw": raw_row(7e6)}
    image = {"floor": http_row(1400), "naive": http_row(23), "fleet": http_row(230), "minimal": http_row(220),
             "raw": raw_row(324)}
    report = {"machine": {"cores": 2}, "image_dtype": "uint8", "small": {"systems": systems},
              "image": {"systems": image},
              "ideal_queue": {"servers": 2, "load": 0.7, "arrivals": "poisson", "p99_over_unloaded": 4.09},
              "latency": {"small": latency_row(12.05, 0.833), "image": latency_row(7.96, 0.817)}}
    report["ratios"] = bench.ratios(report)
    return report


def test_the_table_has_a_row_for_every_target_and_the_ideal_server_s_tail(report):
    table = bench.markdown(report)
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in table.splitlines() if " | " in line}
    assert rows["small: fleet / floor (requests/s)"][0] == str(round(3300 / 3800, 3))
    assert rows["image: fleet / raw (samples/s; uint8 bodies)"][0] == str(round(230 / 324, 3))
    assert "| image | minimal | 220 | 220 |" in table
    minimal = next(cells for label, cells in rows.items() if label.startswith("image: minimal / raw"))
    assert minimal == [str(round(220 / 324, 3)), "(bound, measured) |"]
    assert rows["image: fleet / minimal (samples/s)"][0] == str(round(230 / 220, 3))
    ideal_label = "an ideal server here, p99 at 70% load (Poisson arrivals) / unloaded"
    ideal = next(cells for label, cells in rows.items() if label.startswith(ideal_label))
    assert ideal == ["4.09", "(best case) |"]
    assert "2 cores each serving one request at a time" in table
    assert any(label.startswith("small: p99 at 70% load") and cells[0] == "12.05" for label, cells in rows.items())
    goodput_label, goodput = next((label, cells) for label, cells in rows.items() if label.startswith("image: goodput at 2×"))
    assert goodput[0] == "0.817" and "times each answer: 0.797" in goodput_label
    assert rows["image: accepted p99 at 2× capacity (ms)"][0] == "25.0"


def test_a_report_without_the_minimal_server_has_no_ratios_of_it(report):
    del report["image"]["systems"]["minimal"]
    ratios = bench.ratios(report)
    assert "image_minimal_vs_raw" not in ratios and "image_fleet_vs_minimal" not in ratios
    assert "minimal" not in bench.markdown({**report, "ratios": ratios})


@pytest.mark.parametrize("arrivals, image_dtype, name", [
    ("poisson", "float32", "bench"), ("even", "float32", "bench_even"),
    ("poisson", "uint8", "bench_uint8"), ("even", "uint8", "bench_even_uint8"),
])
def test_each_option_that_changes_the_load_names_its_own_report(arrivals, image_dtype, name):
    assert bench.report_name(argparse.Namespace(arrivals=arrivals, image_dtype=image_dtype)) == name


@pytest.mark.parametrize("image_dtype, values, size", [("float32", (0.0, 1.0), 602_112), ("uint8", (0, 255), 150_528)])
def test_image_bodies_hold_one_image_of_the_dtype_asked(tmp_path, image_dtype, values, size):
    path, content_type = bench.request_body("image", tmp_path, image_dtype)
    image = np.load(path, allow_pickle=False)
    assert content_type == "application/x-npy"
    assert image.shape == (1, 224, 224, 3) and image.dtype == image_dtype and image.nbytes == size
    assert values[0] <= image.min() and image.max() <= values[1] and image.std() > 0
