"""The cluster model: workloads, services and scenarios, the simulator and the HPA's semantics."""
