"""deploy/: the Grafana dashboard and the Prometheus alerts use metrics that /metrics exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from magicflow.service.metrics import Metrics

DEPLOY = Path(__file__).parents[2] / "deploy"


def exposed() -> set[str]:
    """Every series name /metrics can give (a histogram's ``_bucket`` ... too)."""
    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
    return names


def used(text: str) -> set[str]:
    return set(re.findall(r"\bmagicflow_[a-z_]+", text))


def test_alert_rules_use_exposed_metrics() -> None:
    text = (DEPLOY / "prometheus-alerts.yaml").read_text()
    rules = yaml.safe_load(text)["groups"][0]["rules"]
    assert len(rules) >= 8
    for rule in rules:
        assert rule["alert"].startswith("MagicFlow")
        assert rule["expr"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert rule["annotations"]["summary"]
    names = exposed()
    missing = {name for name in used(text) if name not in names}
    assert not missing


def test_dashboard_uses_exposed_metrics_and_is_laid_out() -> None:
    text = (DEPLOY / "grafana-dashboard.json").read_text()
    dashboard = json.loads(text)
    assert dashboard["uid"] == "magicflow-overview"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 12
    names = exposed()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert used(target["expr"]) <= names, (panel["title"], target["expr"])
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_docs_list_every_metric() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    families = {family.name for family in Metrics().registry.collect()}
    for name in families:
        counter = name + "_total"
        assert f"`{name}`" in docs or f"`{counter}`" in docs, name
