"""Learned policies, exported and run with numpy only (no torch on this path).

An exported policy is a directory of plain files, never a pickle:

| file               | holds                                                              |
| ------------------ | ------------------------------------------------------------------ |
| `policy.json`      | format and codec versions, the action table, the network's layout, |
|                    | the observation normalization and the training metadata            |
| `*.npy`            | the arrays: layer weights and biases, normalization mean/variance  |
| `SHA256SUMS`       | the sha256 of every other file                                     |

Loading checks every hash and that the policy was trained with this codec (version and
action table); anything else is refused with a one-line error naming the file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from rlscale.agent.policy import EpisodeContext, Policy
from rlscale.agent.safety import REASONS, SafetyNet
from rlscale.env import codec
from rlscale.env.state import Decision, ServiceState
from rlscale.errors import UserInputError

FORMAT = "rlscale-policy"
FORMAT_VERSION = 1
SUMS_FILE = "SHA256SUMS"
MANIFEST = "policy.json"
ACTIVATIONS = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0)}


def shipped_model(name: str) -> Path | None:
    """The directory of a policy that ships with rlscale (in `rlscale.models`), if there is one by that name."""
    from importlib import resources

    folder = resources.files("rlscale.models") / name
    return Path(str(folder)) if (folder / MANIFEST).is_file() else None


def resolve_policy_path(where: str) -> Path | None:
    """A policy directory given as a path or as the name of a shipped policy."""
    return Path(where) if Path(where).exists() else shipped_model(where)


def action_table() -> dict[str, list]:
    """The codec's actions, recorded with a policy so a changed codec is caught on load."""
    return {
        "utilizations": list(codec.UTILIZATIONS),
        "cpu_levels": codec.CPU_LEVELS,
        "anticipations": list(codec.ANTICIPATIONS),
        "request_shares": list(codec.REQUEST_SHARES),
    }


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class PolicyNetwork:
    """An MLP policy head: normalise, hidden layers, logits; the action is the argmax per part."""

    layers: tuple[tuple[np.ndarray, np.ndarray], ...]  # (weight [out, in], bias [out]) per hidden layer
    action_weight: np.ndarray
    action_bias: np.ndarray
    activation: str
    obs_mean: np.ndarray
    obs_var: np.ndarray
    obs_epsilon: float
    obs_clip: float
    action_nvec: tuple[int, ...]

    def logits(self, observations: np.ndarray) -> np.ndarray:
        """The action head's logits for a batch of raw observations, shape (n, sum(action_nvec))."""
        x = np.clip((observations - self.obs_mean) / np.sqrt(self.obs_var + self.obs_epsilon), -self.obs_clip, self.obs_clip)
        x = x.astype(np.float32)
        activate = ACTIVATIONS[self.activation]
        for weight, bias in self.layers:
            x = activate(x @ weight.T + bias)
        return x @ self.action_weight.T + self.action_bias

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Deterministic actions for a batch of raw observations, shape (n, len(action_nvec))."""
        return self.actions(self.logits(observations))

    def actions(self, logits: np.ndarray) -> np.ndarray:
        """The argmax of each action part's logits."""
        bounds = np.cumsum((0, *self.action_nvec))
        return np.stack([logits[:, a:b].argmax(axis=1) for a, b in zip(bounds[:-1], bounds[1:])], axis=1)


@dataclass(frozen=True)
class ExportedPolicy:
    network: PolicyNetwork
    manifest: dict[str, Any]
    path: Path


def load_exported(path: str | Path) -> ExportedPolicy:
    """Read and verify an exported policy directory."""
    folder = Path(path)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise UserInputError(str(folder), f"no exported policy here (missing {MANIFEST})")
    listed = _verify_hashes(folder)
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as exc:
        raise UserInputError(str(manifest_path), f"not valid JSON ({exc})") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise UserInputError(str(manifest_path), f"not an {FORMAT} v{FORMAT_VERSION} file")
    if manifest.get("codec_version") != codec.CODEC_VERSION or manifest.get("action_table") != action_table():
        raise UserInputError(
            str(manifest_path),
            f"trained with codec version {manifest.get('codec_version')}, this rlscale has codec version "
            f"{codec.CODEC_VERSION}: retrain or use a matching rlscale",
        )
    if manifest.get("observation_size") != codec.OBSERVATION_SIZE or tuple(manifest.get("action_nvec", ())) != codec.ACTION_NVEC:
        raise UserInputError(str(manifest_path), "observation or action size does not match the codec")
    network = manifest["network"]
    norm = manifest["normalization"]
    referenced = {norm["mean"], norm["var"], network["action"]["weight"], network["action"]["bias"]}
    referenced |= {layer[key] for layer in network["layers"] for key in ("weight", "bias")}
    if not referenced <= listed:
        raise UserInputError(str(folder / SUMS_FILE), f"does not cover {sorted(referenced - listed)[0]}")

    def load(name: str) -> np.ndarray:
        return _array(folder, name)

    return ExportedPolicy(
        PolicyNetwork(
            layers=tuple((load(layer["weight"]), load(layer["bias"])) for layer in network["layers"]),
            action_weight=load(network["action"]["weight"]),
            action_bias=load(network["action"]["bias"]),
            activation=network["activation"],
            obs_mean=load(norm["mean"]),
            obs_var=load(norm["var"]),
            obs_epsilon=float(norm["epsilon"]),
            obs_clip=float(norm["clip"]),
            action_nvec=codec.ACTION_NVEC,
        ),
        manifest,
        folder,
    )


def _verify_hashes(folder: Path) -> set[str]:
    """Check every file SHA256SUMS lists; the names it covers."""
    sums = folder / SUMS_FILE
    if not sums.is_file():
        raise UserInputError(str(folder), f"missing {SUMS_FILE}: cannot check the policy's files")
    listed: set[str] = set()
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        target = folder / name
        if not name or "/" in name or not target.is_file():
            raise UserInputError(str(sums), f"lists a missing or invalid file {name!r}")
        if sha256_of(target) != digest:
            raise UserInputError(str(target), "sha256 mismatch: the file changed since the policy was exported")
        listed.add(name)
    if MANIFEST not in listed:
        raise UserInputError(str(sums), f"does not cover {MANIFEST}")
    return listed


def _array(folder: Path, name: str) -> np.ndarray:
    try:
        return np.load(folder / name, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserInputError(str(folder / name), f"not a plain numpy array ({exc})") from None


class LearnedPolicy(Policy):
    """A trained policy deciding through the codec (encode, network, decode) inside its safety net.

    A decision the safety net refuses (`rlscale.agent.safety`) hands the service to its HPA with
    its original resources; `fallbacks` counts them per service and reason.
    """

    def __init__(self, exported: ExportedPolicy, name: str = "learned") -> None:
        self.exported = exported
        self.name = name
        self._histories: dict[str, codec.History] = {}
        self.safety = SafetyNet.from_statistics(exported.network.obs_mean, exported.network.obs_var)

    @classmethod
    def load(cls, path: str | Path, name: str = "learned") -> "LearnedPolicy":
        return cls(load_exported(path), name)

    def reset(self, context: EpisodeContext) -> None:
        super().reset(context)
        self._histories = {}
        self.safety = SafetyNet.from_statistics(self.exported.network.obs_mean, self.exported.network.obs_var)

    def fallbacks(self, service: str) -> dict[str, int]:
        """How many decisions for `service` the safety net handed back to the HPA, by reason."""
        return {reason: self.safety.fired[(service, reason)] for reason in REASONS}

    def decide(self, state: ServiceState) -> Decision:
        return self.decide_all({state.name: state})[state.name]

    def decide_all(self, states: Mapping[str, ServiceState]) -> dict[str, Decision]:
        names = list(states)
        for name in names:
            self._histories.setdefault(name, codec.History()).record(states[name])
        observations = np.stack([codec.encode(self._histories[n]) for n in names])
        network = self.exported.network
        with np.errstate(all="ignore"):
            logits = network.logits(observations)
        actions = network.actions(logits)
        decisions = {}
        for i, name in enumerate(names):
            history = self._histories[name]
            finite = bool(np.all(np.isfinite(observations[i])) and np.all(np.isfinite(logits[i])))
            proposal = codec.decode(actions[i], history, workers_cores=self._workers_cores(name)) if finite else None
            if self.safety.check(states[name], observations[i], logits[i], float(observations[i][0]), proposal) is not None:
                decisions[name] = self._fallback(states[name])
            else:
                decisions[name] = proposal  # type: ignore[assignment]
            codec.applied(history, decisions[name])
        return decisions

    def _fallback(self, state: ServiceState) -> Decision:
        """The service's HPA in charge, with the resources it had before (the scenario's where known)."""
        try:
            spec = self.context.spec(state.name)
            resources = (spec.cpu_request, spec.cpu_limit, spec.memory_request, spec.memory_limit)
        except (AttributeError, KeyError):
            resources = (state.cpu_request, state.cpu_limit, state.memory_request, state.memory_limit)
        return Decision(None, *resources)

    def _workers_cores(self, name: str) -> float | None:
        """The most CPU the service's workers can use, where the context knows the service."""
        try:
            spec = self.context.spec(name)
        except (AttributeError, KeyError):
            return None
        return spec.workers_cores
