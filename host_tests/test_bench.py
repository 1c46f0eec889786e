"""A short smoke of the benchmarks: each part runs end to end on tiny inputs and its figures are plausible."""

from __future__ import annotations

from typing import Any

from bench import heap, latency, ota, size
from bench.common import table
from localjobs.broker import Mosquitto
from localjobs.service import JobsService


def test_bisection_finds_the_threshold() -> None:
    assert heap.smallest(lambda k: k >= 37, 16, 512) == 37


def test_size_covers_every_module() -> None:
    figures = size.measure()
    assert "client.py" in figures["modules"] and figures["optimize"] == "-O1"
    assert figures["total_mpy"] == sum(m["mpy"] for m in figures["modules"].values()) > 0


def test_a_32k_cycle_passes_with_room_and_fails_without() -> None:
    with Mosquitto() as broker, JobsService(broker.host, broker.port) as service:
        assert heap.cycle_passes(service, broker, "ours", 400)
        assert not heap.cycle_passes(service, broker, "ours", 24)
        assert heap.cycle_passes(service, broker, "naive", 400)


def test_the_32_bit_build_runs_the_cycle_frozen_and_as_mpy() -> None:
    # The hooks the 32-bit figures are measured with: the frozen build and the same build with .mpy files.
    with Mosquitto() as broker, JobsService(broker.host, broker.port) as service:
        for runtime in ("esp32like", "esp32like-mpy"):
            assert heap.cycle_passes(service, broker, "ours", 400, runtime), runtime
            assert not heap.cycle_passes(service, broker, "ours", 12, runtime), runtime
        # The naive client's 32-bit figure is measured on the frozen build, whose umqtt.simple is frozen.
        assert heap.cycle_passes(service, broker, "naive", 400, "esp32like")
        assert not heap.cycle_passes(service, broker, "naive", 12, "esp32like")


def test_resident_heap_of_the_library_frozen_and_as_mpy() -> None:
    frozen, mpy = heap.resident("esp32like"), heap.resident("esp32like-mpy")
    # Frozen, the bytecode stays in the image: what is left on the heap is the modules' objects.
    assert 0 < frozen["core"] < frozen["whole"] < mpy["core"] < mpy["whole"]


def test_an_ota_cycle_passes_with_room_and_fails_without(tmp_path: Any) -> None:
    files = tmp_path / "files"
    with Mosquitto() as broker, JobsService(broker.host, broker.port, http=("127.0.0.1", 0), files=files) as service:
        trials = ota.Trials(broker, service, files, tmp_path)
        assert trials.ota("unix64", 400) and trials.download("unix64", 400)
        assert not trials.ota("unix64", 40)
    assert 4096 < ota.esp32_sim_resident("unix64", tmp_path) < 64 * 1024


def test_per_call_allocation_is_counted() -> None:
    with Mosquitto() as broker, JobsService(broker.host, broker.port) as service:
        calls: dict[str, Any] = heap.per_call(service, broker, 2)
    assert set(calls) == {"get_pending", "start_next", "describe", "update"}
    assert all(c["steady_alloc"] > 0 for c in calls.values())


def test_latency_ratios_are_against_the_fastest_sdk() -> None:
    rounds = {"get": [1.0, 1.0], "start_next": [1.0, 1.0], "describe": [1.0, 1.0], "update": [1.0, 1.0]}
    result = latency.summary({"iotjobs/unix port": {k: [v / 2 for v in ms] for k, ms in rounds.items()},
                              "SDK v1": rounds, "SDK v2": {k: [v * 3 for v in ms] for k, ms in rounds.items()}})
    assert latency.overall_ratio(result, "iotjobs/unix port") == 0.5
    assert result["SDK v2"]["update"]["ratio_to_fastest_peer"] == 3.0


def test_table_lines_up() -> None:
    assert table(["a", "bb"], [["x", 1]]).splitlines() == ["a  bb", "-  --", "x   1"]


def test_a_32k_cycle_over_tls_passes_with_room_and_fails_without() -> None:
    with heap.tls_service() as (service, folder):
        for client in ("mqtts", "https"):
            assert heap.cycle_passes(service, None, client, 400, folder=folder), client
            assert not heap.cycle_passes(service, None, client, 24, folder=folder), client
        for runtime in ("esp32like-mpy", "esp32like"):
            assert heap.cycle_passes(service, None, "mqtts", 400, runtime, folder), runtime
            assert not heap.cycle_passes(service, None, "mqtts", 12, runtime, folder), runtime
