"""A local Kubernetes-API emulator backed by the simulator: a test and demo fixture, a part of its own.

It serves the slice of the Kubernetes REST API that rlscale's controller uses (Deployments
and their scale, HorizontalPodAutoscalers, Pods and pods/resize, Leases, Events, PodMetrics)
to the real `kubernetes` client over HTTP, and the cluster's metrics to Prometheus. It is not
a cluster for production, and no core part (`rlscale.env`, `agent`, `controller`, `training`)
imports it (`tests/test_parts.py`). Beside it, what the tests and the benches share to drive it:
a real Prometheus (`prometheus`), small scenarios (`small_scenarios`), the controller against it
(`harness`) and the fault soak (`soak`).
"""
