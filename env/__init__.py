"""The cluster model: workloads, services and scenarios, the simulator and the HPA's semantics,
the observation/action codec and the gymnasium environments (registered on import)."""

import gymnasium

gymnasium.register(id="rlscale/ServiceScaling-v0", entry_point="rlscale.env.envs:ServiceScalingEnv")
gymnasium.register(id="rlscale/ClusterScaling-v0", entry_point="rlscale.env.envs:ClusterScalingEnv")
