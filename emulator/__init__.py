"""A local Kubernetes-API emulator backed by the simulator: a test and demo fixture.

It serves the slice of the Kubernetes REST API that rlscale's controller uses (Deployments
and their scale, HorizontalPodAutoscalers, Pods and pods/resize, Leases, Events, PodMetrics)
to the real `kubernetes` client over HTTP, and the cluster's metrics to Prometheus. It is not
a cluster for production.
"""
