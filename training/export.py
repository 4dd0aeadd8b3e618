"""From a trained stable-baselines3 PPO model to the pickle-free exported format (see
`rlscale.agent.learned`), and from its policy to the numpy network used for evaluation."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from rlscale.agent.learned import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    SUMS_FILE,
    PolicyNetwork,
    action_table,
    sha256_of,
)
from rlscale.env import codec
from rlscale.errors import UserInputError

NORMALIZATION_SUFFIX = ".vecnormalize.pkl"
METADATA_SUFFIX = ".meta.json"


def network_from_model(model: Any, obs_mean: np.ndarray, obs_var: np.ndarray, epsilon: float, clip: float) -> PolicyNetwork:
    """The deterministic policy of an SB3 PPO MlpPolicy (MultiDiscrete actions) as numpy arrays."""
    import torch

    policy = model.policy
    layers, activation = [], None
    for module in policy.mlp_extractor.policy_net:
        if isinstance(module, torch.nn.Linear):
            layers.append((_numpy(module.weight), _numpy(module.bias)))
        elif isinstance(module, torch.nn.Tanh):
            activation = "tanh"
        elif isinstance(module, torch.nn.ReLU):
            activation = "relu"
        else:
            raise ValueError(f"cannot export a policy layer of type {type(module).__name__}")
    return PolicyNetwork(
        layers=tuple(layers),
        action_weight=_numpy(policy.action_net.weight),
        action_bias=_numpy(policy.action_net.bias),
        activation=activation or "tanh",
        obs_mean=np.asarray(obs_mean, dtype=np.float64),
        obs_var=np.asarray(obs_var, dtype=np.float64),
        obs_epsilon=float(epsilon),
        obs_clip=float(clip),
        action_nvec=codec.ACTION_NVEC,
    )


def _numpy(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float32)


def write_exported(network: PolicyNetwork, out_dir: Path, training: dict[str, Any]) -> None:
    """Write the arrays, the manifest and the checksums of an exported policy."""
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for i, (weight, bias) in enumerate(network.layers):
        arrays[f"layer{i}.weight.npy"], arrays[f"layer{i}.bias.npy"] = weight, bias
        layers.append({"weight": f"layer{i}.weight.npy", "bias": f"layer{i}.bias.npy"})
    arrays["action.weight.npy"], arrays["action.bias.npy"] = network.action_weight, network.action_bias
    arrays["obs_mean.npy"], arrays["obs_var.npy"] = network.obs_mean, network.obs_var
    for name, array in arrays.items():
        np.save(out_dir / name, array, allow_pickle=False)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "codec_version": codec.CODEC_VERSION,
        "observation_size": codec.OBSERVATION_SIZE,
        "action_nvec": list(codec.ACTION_NVEC),
        "action_table": action_table(),
        "network": {
            "activation": network.activation,
            "layers": layers,
            "action": {"weight": "action.weight.npy", "bias": "action.bias.npy"},
        },
        "normalization": {"mean": "obs_mean.npy", "var": "obs_var.npy", "epsilon": network.obs_epsilon, "clip": network.obs_clip},
        "training": training,
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    names = sorted([*arrays, MANIFEST])
    (out_dir / SUMS_FILE).write_text("".join(f"{sha256_of(out_dir / n)}  {n}\n" for n in names))


def export_model(model_zip: Path, out_dir: Path) -> None:
    """`rlscale export`: a saved PPO model (with its normalization statistics beside it) to a directory."""
    if not model_zip.is_file():
        raise UserInputError(str(model_zip), "no such model file")
    stats_path = model_zip.with_suffix(NORMALIZATION_SUFFIX)
    if not stats_path.is_file():
        raise UserInputError(str(model_zip), f"its observation normalization statistics are missing ({stats_path.name})")
    from stable_baselines3 import PPO

    try:
        model = PPO.load(model_zip, device="cpu")
    except Exception as exc:  # SB3 raises many types for a bad zip
        raise UserInputError(str(model_zip), f"not a stable-baselines3 PPO model ({type(exc).__name__}: {exc})") from None
    with stats_path.open("rb") as f:
        normalization = pickle.load(f)  # written by our own training run; the export is what ships
    metadata_path = model_zip.with_suffix(METADATA_SUFFIX)
    training = json.loads(metadata_path.read_text()) if metadata_path.is_file() else {}
    rms = normalization.obs_rms
    network = network_from_model(model, rms.mean, rms.var, normalization.epsilon, normalization.clip_obs)
    write_exported(network, out_dir, training)
