"""The Kubernetes-API emulator's speed: API requests per second, and services simulated in real time.

1. GET and PATCH (merge patch) on one HorizontalPodAutoscaler, sequentially over one
   keep-alive connection, for a few seconds each: requests per second served.
2. For growing numbers of copies of the image-classification service, how many simulated
   seconds the emulator advances per wall-clock second (stepping, projecting objects and
   accumulating telemetry, as its clock thread does): real time means >= 1.

    .venv/bin/python bench/emulator.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import time

from rlscale.emulator.api import ClusterApi
from rlscale.emulator.server import EmulatorServer
from rlscale.env.scenario import NodePool, load_scenario

HPA = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/image-classifier"


def requests_per_second(server: EmulatorServer, method: str, seconds: float) -> float:
    host, port = server.http.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=10)
    body = json.dumps({"spec": {"maxReplicas": 20}}).encode() if method == "PATCH" else None
    headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        connection.request(method, HPA, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
        done += 1
    connection.close()
    return done / (time.perf_counter() - started)


def realtime_factor(services: int, seconds: float) -> float:
    base = load_scenario("image-classification")
    spec = base.services[0]
    copies = tuple(dataclasses.replace(spec, name=f"{spec.name}-{i}") for i in range(services))
    scenario = dataclasses.replace(base, services=copies, node_pools=(NodePool("bench", max(3, services), 64, 256 * 2**30),))
    api = ClusterApi(scenario, duration_s=7200)
    simulated, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds and api.sim.time_left_s >= 5:
        api.advance(5)
        simulated += 5
    return simulated / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    server = EmulatorServer(ClusterApi(load_scenario("image-classification"), duration_s=3600), speed=0).start()
    try:
        for method in ("GET", "PATCH"):
            print(f"{method} on an HPA: {requests_per_second(server, method, args.seconds):,.0f} requests/s")
    finally:
        server.stop()
    for services in (1, 10, 100, 1000, 3000):
        factor = realtime_factor(services, args.seconds)
        print(f"{services:4d} services: {factor:8.1f} simulated seconds per wall second{'' if factor >= 1 else '  (slower than real time)'}")
        if factor < 1:
            break


if __name__ == "__main__":
    main()
