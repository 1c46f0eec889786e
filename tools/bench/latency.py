"""Latency: request -> accepted round trips of the four Jobs calls, ours beside AWS's device SDKs, in one run."""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import time
from collections.abc import Callable
from typing import Any

from localjobs.broker import Mosquitto

from .common import LocalJobs, plot_path, run_device, table, write_json
from .relay import RelayProcess

CALLS = ("get", "start_next", "describe", "update")
CLIENTS = ("iotjobs/unix port", "iotjobs/CPython", "SDK v1 (AWSIoTPythonSDK)", "SDK v2 (awsiotsdk)")
ARN = "arn:aws:iot:us-east-1:123456789012:thing/"
WAIT = 10.0
Rounds = dict[str, list[float]]


def timed_rounds(repeats: int, calls: list[tuple[str, Callable[[], Any]]]) -> Rounds:
    """Milliseconds per call, the four calls in turn, after one round of warm-up (as the device script does)."""
    times: Rounds = {name: [] for name, _ in calls}
    for round_ in range(repeats + 1):
        for name, call in calls:
            start = time.perf_counter()
            call()
            if round_:
                times[name].append((time.perf_counter() - start) * 1000)
    return times


def ours(runtime: str, broker: Any, thing: str, repeats: int) -> Rounds:
    ok, results, output = run_device(runtime, "dev_rtt.py", [broker.host, str(broker.port), thing, thing + "-job",
                                                             str(repeats)], "128k", timeout=300)
    if not ok:
        raise RuntimeError("%s round trips failed:\n%s" % (runtime, output))
    return {name: [us / 1000 for us in results[name]] for name in CALLS}


def sdk_v1(broker: Any, thing: str, repeats: int) -> Rounds:
    from AWSIoTPythonSDK.core.jobs.thingJobManager import (
        jobExecutionStatus,
        jobExecutionTopicReplyType,
        jobExecutionTopicType,
    )
    from AWSIoTPythonSDK.MQTTLib import AWSIoTMQTTThingJobsClient

    client = AWSIoTMQTTThingJobsClient(thing + "-v1", thing, QoS=1)
    client.configureEndpoint(broker.host, broker.port)
    client.configureConnectDisconnectTimeout(10)
    client.configureMQTTOperationTimeout(5)
    assert client.connect(keepAliveIntervalSecond=60)
    replies: queue.Queue[str] = queue.Queue()

    def received(_client: Any, _userdata: Any, message: Any) -> None:
        replies.put(message.topic)

    accepted = jobExecutionTopicReplyType.JOB_ACCEPTED_REPLY_TYPE
    job = thing + "-job"
    topics = jobExecutionTopicType
    for kind, job_id in ((topics.JOB_GET_PENDING_TOPIC, None), (topics.JOB_START_NEXT_TOPIC, None),
                         (topics.JOB_DESCRIBE_TOPIC, job), (topics.JOB_UPDATE_TOPIC, job)):
        assert client.createJobSubscription(received, kind, accepted, job_id)

    def answered(sent: bool) -> None:
        # v1 uses one clientToken for every request: its replies can only be matched by topic, in order.
        assert sent
        assert replies.get(timeout=WAIT).endswith("/accepted")

    in_progress = jobExecutionStatus.JOB_EXECUTION_IN_PROGRESS
    try:
        return timed_rounds(repeats, [
            ("get", lambda: answered(client.sendJobsQuery(topics.JOB_GET_PENDING_TOPIC))),
            ("start_next", lambda: answered(client.sendJobsStartNext())),
            ("describe", lambda: answered(client.sendJobsDescribe(job, includeJobDocument=False))),
            ("update", lambda: answered(client.sendJobsUpdate(job, in_progress, {"step": "1"}))),
        ])
    finally:
        client.disconnect()


def sdk_v2(broker: Any, thing: str, repeats: int) -> Rounds:
    from awscrt import mqtt, mqtt_request_response
    from awsiot import iotjobs

    connection = mqtt.Connection(mqtt.Client(None, None), broker.host, broker.port, thing + "-v2", keep_alive_secs=60)
    connection.connect().result(WAIT)
    options = mqtt_request_response.ClientOptions(
        max_request_response_subscriptions=4, max_streaming_subscriptions=2, operation_timeout_in_seconds=10)
    jobs = iotjobs.IotJobsClientV2(connection, options)
    job = thing + "-job"
    try:
        return timed_rounds(repeats, [
            ("get", lambda: jobs.get_pending_job_executions(
                iotjobs.GetPendingJobExecutionsRequest(thing_name=thing)).result(WAIT)),
            ("start_next", lambda: jobs.start_next_pending_job_execution(
                iotjobs.StartNextPendingJobExecutionRequest(thing_name=thing)).result(WAIT)),
            ("describe", lambda: jobs.describe_job_execution(
                iotjobs.DescribeJobExecutionRequest(thing_name=thing, job_id=job, include_job_document=False)
            ).result(WAIT)),
            ("update", lambda: jobs.update_job_execution(
                iotjobs.UpdateJobExecutionRequest(thing_name=thing, job_id=job, status="IN_PROGRESS",
                                                  status_details={"step": "1"})).result(WAIT)),
        ])
    finally:
        connection.disconnect().result(WAIT)


def summary(times: dict[str, Rounds]) -> dict[str, Any]:
    """Medians and 90th percentiles per client and call, and each median's ratio to the fastest SDK's."""
    result: dict[str, Any] = {}
    for client, rounds in times.items():
        result[client] = {name: {"median_ms": statistics.median(ms), "p90_ms": statistics.quantiles(ms, n=10)[-1],
                                 "max_ms": max(ms), "n": len(ms)} for name, ms in rounds.items()}
    peers = [c for c in times if c.startswith("SDK")]
    for client in times:
        for name in CALLS:
            fastest = min(result[p][name]["median_ms"] for p in peers)
            result[client][name]["ratio_to_fastest_peer"] = result[client][name]["median_ms"] / fastest
    return result


def overall_ratio(result: dict[str, Any], client: str) -> float:
    """Median over all four calls' round trips against the fastest SDK's (the summary line's figure)."""
    peers = [c for c in result if c.startswith("SDK")]

    def all_calls(c: str) -> float:
        return statistics.median([result[c][name]["median_ms"] for name in CALLS])

    return all_calls(client) / min(all_calls(p) for p in peers)


def plot(result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(result)
    colors = ["#2a7ab0", "#7fb8dc", "#d98c3a", "#e8bd7d"]
    for i, (client, calls) in enumerate(result.items()):
        xs = [x + (i - (len(result) - 1) / 2) * width for x in range(len(CALLS))]
        ax.bar(xs, [calls[name]["median_ms"] for name in CALLS], width, label=client, color=colors[i % len(colors)])
    ax.set_xticks(range(len(CALLS)), ["get pending", "start-next", "describe", "update"])
    ax.set_ylabel("median round trip (ms)")
    ax.set_title("request -> accepted, mosquitto + local Jobs service on loopback, through the quick-ACK relay")
    top = max(calls[name]["median_ms"] for calls in result.values() for name in CALLS)
    ax.set_ylim(0, top * 1.25)
    ax.legend(ncol=len(result), loc="upper center", fontsize="small")
    fig.tight_layout()
    fig.savefig(plot_path("latency"), dpi=110)
    plt.close(fig)


def run_clients(broker: Any, service: LocalJobs, route: str, repeats: int) -> dict[str, Rounds]:
    """Each client in turn, alone, on its own thing with one job kept IN_PROGRESS; broker is where they connect."""
    iot = service.iot()
    times: dict[str, Rounds] = {}
    for i, client in enumerate(CLIENTS):
        thing = "rtt-%s-%d" % (route, i)
        iot.create_thing(thingName=thing)
        iot.create_job(jobId=thing + "-job", targets=[ARN + thing], document=json.dumps({"operation": "bench"}))
        if client == "iotjobs/unix port":
            times[client] = ours("unix64", broker, thing, repeats)
        elif client == "iotjobs/CPython":
            times[client] = ours("cpython", broker, thing, repeats)
        elif client.startswith("SDK v1"):
            times[client] = sdk_v1(broker, thing, repeats)
        else:
            times[client] = sdk_v2(broker, thing, repeats)
    return times


def measure(repeats: int, direct_repeats: int) -> dict[str, Any]:
    with Mosquitto() as broker, LocalJobs(broker.host, broker.port) as service, \
            RelayProcess(broker.host, broker.port) as relay:
        relayed = summary(run_clients(relay, service, "relay", repeats))
        direct = summary(run_clients(broker, service, "direct", direct_repeats))
    return {"repeats": repeats, "clients": relayed, "direct": {"repeats": direct_repeats, "clients": direct},
            "rtt_ratio_vs_fastest_peer": overall_ratio(relayed, "iotjobs/unix port"),
            "cpython_ratio_vs_fastest_peer": overall_ratio(relayed, "iotjobs/CPython")}


def report(figures: dict[str, Any]) -> str:
    def rows(clients: dict[str, Any]) -> list[list[str]]:
        return [[client] + ["%.2f ms (x%.2f)" % (calls[n]["median_ms"], calls[n]["ratio_to_fastest_peer"])
                            for n in CALLS] + ["%.1f ms" % max(calls[n]["p90_ms"] for n in CALLS)]
                for client, calls in clients.items()]

    relayed = table(["through a quick-ACK relay (n=%d)" % figures["repeats"], *CALLS, "worst p90"],
                    rows(figures["clients"]))
    direct = table(["direct, clients as shipped (n=%d)" % figures["direct"]["repeats"], *CALLS, "worst p90"],
                   rows(figures["direct"]["clients"]))
    return "%s\n\n%s\nrtt_ratio_vs_fastest_peer (unix port, relayed) = %.2f, CPython = %.2f" % (
        relayed, direct, figures["rtt_ratio_vs_fastest_peer"], figures["cpython_ratio_vs_fastest_peer"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="30 rounds instead of 200")
    args = parser.parse_args(argv)
    figures = measure(30 if args.quick else 200, 10 if args.quick else 25)
    write_json("latency", figures)
    plot(figures["clients"])
    print(report(figures))
    return figures


if __name__ == "__main__":
    main()
