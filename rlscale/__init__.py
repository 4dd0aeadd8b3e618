"""rlscale: a reinforcement-learning autoscaler for ML inference services on Kubernetes.

Importing it registers the gymnasium environments (`rlscale/ServiceScaling-v0`,
`rlscale/ClusterScaling-v0`); their modules load only when an environment is made.
"""

import gymnasium

__version__ = "0.1.0"

gymnasium.register(id="rlscale/ServiceScaling-v0", entry_point="rlscale.env.envs:ServiceScalingEnv")
gymnasium.register(id="rlscale/ClusterScaling-v0", entry_point="rlscale.env.envs:ClusterScalingEnv")
