"""Baselines as you run them: `rlscale compare --baselines FILE` fixes some baselines' settings instead of tuning them.

    predictive: {margin: 0.3, level_smoothing: 0.5, trend_smoothing: 0.3, trend_damping: 0.9, hpa_target: 100}
    kpa: {target_concurrency: 4, target_utilization: 0.7, scale_down_delay_s: 60}

Each section is optional and applies to every service; a field left out keeps its default. A
value out of range or an unknown key is one line naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path

from rlscale.agent.predictive import PredictiveSettings
from rlscale.env.kpa import KpaSettings
from rlscale.env.scenario import Scenario
from rlscale.training.policies import PolicySpec
from rlscale.validation import Reader, load_yaml_file


def load_baseline_settings(path: Path, scenario: Scenario) -> dict[str, PolicySpec]:
    """The baselines the file fixes, by name, with their settings for every service of the scenario."""
    reader = Reader(load_yaml_file(path), str(path))
    fixed: dict[str, PolicySpec] = {}
    if (section := reader.optional_mapping("predictive")) is not None:
        d = PredictiveSettings()
        setting = PredictiveSettings(
            margin=section.number("margin", d.margin, min_value=0.0, max_value=10.0),
            level_smoothing=section.number("level_smoothing", d.level_smoothing, positive=True, max_value=1.0),
            trend_smoothing=section.number("trend_smoothing", d.trend_smoothing, min_value=0.0, max_value=1.0),
            trend_damping=section.number("trend_damping", d.trend_damping, min_value=0.0, max_value=1.0),
            hpa_target=section.number("hpa_target", d.hpa_target, min_value=1, max_value=1000, integer=True),
        )
        section.done()
        fixed["predictive"] = PolicySpec("predictive", settings={s.name: setting for s in scenario.services})
    if (section := reader.optional_mapping("kpa")) is not None:
        d = KpaSettings(target_concurrency=1.0)
        setting = KpaSettings(
            target_concurrency=section.number("target_concurrency", positive=True),
            target_utilization=section.number("target_utilization", d.target_utilization, positive=True, max_value=1.0),
            stable_window_s=section.number("stable_window_s", d.stable_window_s, min_value=6.0, max_value=3600.0),
            panic_window_percentage=section.number("panic_window_percentage", d.panic_window_percentage, min_value=1.0,
                                                   max_value=100.0),
            panic_threshold=section.number("panic_threshold", d.panic_threshold, min_value=1.1, max_value=10.0),
            max_scale_up_rate=section.number("max_scale_up_rate", d.max_scale_up_rate, min_value=1.0),
            max_scale_down_rate=section.number("max_scale_down_rate", d.max_scale_down_rate, min_value=1.0),
            scale_down_delay_s=section.number("scale_down_delay_s", d.scale_down_delay_s, min_value=0.0, max_value=3600.0),
        )
        section.done()
        fixed["kpa"] = PolicySpec("kpa", settings={s.name: setting for s in scenario.services})
    reader.done()
    return fixed
