"""`agents/registry.py`: names to agents, the refusal of an unknown name, and the build call."""

from __future__ import annotations

import importlib

import pytest
import torch

from agents import registry


def test_each_name_builds_through_its_own_module():
    assert list(registry.AGENTS) == ["dqn", "sac"]
    for name in ("dqn", "sac"):
        entry = registry.get(name)
        assert entry.name == name
        assert entry.build is importlib.import_module(f"agents.{name}").build
    assert "discrete" in registry.get("dqn").summary
    assert "continuous" in registry.get("sac").summary


def test_an_unknown_agent_is_refused_in_one_line_listing_the_valid_ones():
    with pytest.raises(ValueError) as err:
        registry.get("ppo")
    assert str(err.value) == "--agent 'ppo' is not an agent; valid: dqn, sac"


@pytest.mark.parametrize("name", ["dqn", "sac"])
def test_build_agent_passes_its_arguments_to_the_agents_build(name, monkeypatch):
    calls = []
    sentinel = object()

    def fake_build(config, schedule, device, seed):
        calls.append((config, schedule, device, seed))
        return sentinel

    monkeypatch.setattr(importlib.import_module(f"agents.{name}"), "build", fake_build)
    config, schedule, device = object(), object(), torch.device("cpu")
    assert registry.build_agent(name, config, schedule, device, 7) is sentinel
    assert calls == [(config, schedule, device, 7)]
