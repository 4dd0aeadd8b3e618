"""The cluster model: workloads, services and scenarios, the simulator and the HPA's semantics,
the observation/action codec and the gymnasium environments (registered by `import rlscale`)."""
