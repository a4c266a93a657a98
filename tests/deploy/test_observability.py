"""The observability kit in deploy/: the Prometheus alert rules parse (``promtool check
rules`` when promtool is on PATH, and always a schema check), the Grafana dashboard is a
well-formed dashboard, and every metric either of them names is in a real ``/metrics``
scrape of ``presence-svc serve`` (started here as a process, with its worker)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.children import dies_with_us
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
DASHBOARD = DEPLOY / "grafana" / "presence-svc.json"
CLI = str(Path(sys.executable).with_name("presence-svc"))

# Series Prometheus makes itself for every scrape target: never in a /metrics answer.
PROMETHEUS_OWN = {"up"}
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
_KEYWORDS |= {"unless", "offset", "bool", "inf", "nan"}
_DURATION = re.compile(r"^\d+(ms|s|m|h|d|w|y)$")

# --- PromQL ----------------------------------------------------------------------------------


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana target's) selects: what is left
    after strings, label matchers, ranges, grouping clauses, variables and function names."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\$\{\w+\}|\$\w+", " ", text)  # Grafana variables ($__rate_interval, $job)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    grouping = r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
    text = re.sub(grouping, " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name, rest = match[0], text[match.end() :].lstrip()
        if rest.startswith("(") or name.lower() in _KEYWORDS:
            continue  # a function or an operator
        names.add(name)
    return names


def exposed_names(scrape: str) -> set[str]:
    """Every series name a Prometheus scrape of this text stores: the samples, and each
    family's by its type (a counter is ``_total``, a histogram ``_bucket/_count/_sum``), so
    a family with no sample yet (a labelled counter before its first increment) counts."""
    names = {line.split("{")[0].split()[0] for line in scrape.splitlines() if line[:1].isalpha()}
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", scrape, re.MULTILINE):
        suffixes = {
            "counter": ["_total", "_created"],
            "histogram": ["_bucket", "_count", "_sum", "_created"],
            "summary": ["", "_count", "_sum", "_created"],
        }.get(kind, [""])
        names |= {family.removesuffix("_total") + s for s in suffixes}
    return names


# --- the files -------------------------------------------------------------------------------


def _alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def rules_problems(document: Any) -> list[str]:
    """What ``promtool check rules`` would refuse, and what this kit promises of each rule."""
    if not isinstance(document, dict) or set(document) != {"groups"}:
        return ["the file must hold one key, groups"]
    problems: list[str] = []
    groups = document["groups"]
    if not isinstance(groups, list) or not groups:
        return ["groups must be a non-empty list"]
    seen_groups: set[str] = set()
    for group in groups:
        name = group.get("name")
        if not isinstance(name, str) or not name or name in seen_groups:
            problems.append(f"group name {name!r} is missing or repeated")
        seen_groups.add(str(name))
        rules = group.get("rules")
        if not isinstance(rules, list) or not rules:
            problems.append(f"group {name!r} has no rules")
            continue
        for rule in rules:
            problems += _rule_problems(rule)
    return problems


def _rule_problems(rule: Any) -> list[str]:
    if not isinstance(rule, dict):
        return [f"rule {rule!r} is not a mapping"]
    alert = rule.get("alert")
    where = f"rule {alert!r}"
    problems = []
    if not isinstance(alert, str) or not re.fullmatch(r"[A-Z][A-Za-z0-9]*", alert):
        problems.append(f"{where}: alert must be a CamelCase name")
    if unknown := set(rule) - {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}:
        problems.append(f"{where}: unknown keys {sorted(unknown)}")
    expr = rule.get("expr")
    if not isinstance(expr, str) or not expr.strip():
        problems.append(f"{where}: expr is missing")
    elif expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
        problems.append(f"{where}: expr has unbalanced brackets")
    if not _DURATION.match(str(rule.get("for", ""))):
        problems.append(f"{where}: for must be a duration like 5m")
    labels = rule.get("labels")
    if not isinstance(labels, dict) or labels.get("severity") not in {"page", "warn"}:
        problems.append(f"{where}: labels.severity must be page or warn")
    notes = rule.get("annotations")
    if not isinstance(notes, dict) or not {"summary", "description"} <= set(notes):
        problems.append(f"{where}: annotations need a summary and a description")
    return problems


def dashboard_problems(dashboard: Any) -> list[str]:
    problems = []
    if not dashboard.get("title") or not dashboard.get("uid"):
        problems.append("the dashboard needs a title and a uid")
    panels = dashboard.get("panels", [])
    ids = [p.get("id") for p in panels]
    if len(ids) != len(set(ids)) or None in ids:
        problems.append("panel ids must be present and unique")
    variables = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    for panel in panels:
        if panel.get("type") == "row":
            continue
        where = f"panel {panel.get('title')!r}"
        grid = panel.get("gridPos", {})
        if not {"h", "w", "x", "y"} <= set(grid) or grid["x"] + grid["w"] > 24:
            problems.append(f"{where}: gridPos must place it within 24 columns")
        if not panel.get("targets"):
            problems.append(f"{where}: no query")
        for target in panel.get("targets", []):
            expr = target.get("expr", "")
            if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
                problems.append(f"{where}: unbalanced brackets in {expr!r}")
            used = set(re.findall(r"\$(?!__)(\w+)|\$\{(\w+)\}", expr))
            for name in {a or b for a, b in used} - variables:
                problems.append(f"{where}: ${name} is not a dashboard variable")
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"{where}: its datasource must be the $datasource variable")
    return problems


# --- a real scrape ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """/metrics of a real ``presence-svc serve`` (embedded Redis, worker in-process)."""
    data = tmp_path_factory.mktemp("scraped")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
    env["PRESENCE_DATA_DIR"] = str(data)
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=dies_with_us(),
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "presence-svc serve exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    yield r.read().decode()
                    break
            except OSError:
                assert time.monotonic() < deadline, "presence-svc serve never answered /metrics"
                time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(15)


# --- tests -----------------------------------------------------------------------------------


def test_alert_rules_parse_and_pass_the_schema_check() -> None:
    problems = rules_problems(yaml.safe_load(ALERTS.read_text()))
    assert not problems, "\n".join(problems)
    alerts = {rule["alert"] for rule in _alert_rules()}
    assert {"PresenceHigh5xxRate", "PresenceHigh503Rate", "PresenceWorkerDown"} <= alerts
    assert {"PresenceLedgerLagHigh", "PresenceLedgerBacklogHigh"} <= alerts
    # promtool (Debian: apt-get install prometheus, 330 MB: not in scripts/test-deps.sh) also
    # parses the PromQL, on machines that have it.
    promtool = shutil.which("promtool")
    if promtool is not None:
        result = subprocess.run(
            [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"SUCCESS: {len(alerts)} rules found" in result.stdout


def test_dashboard_is_a_well_formed_grafana_dashboard() -> None:
    problems = dashboard_problems(json.loads(DASHBOARD.read_text()))
    assert not problems, "\n".join(problems)


def test_every_metric_the_kit_names_is_served(scrape: str) -> None:
    exposed = exposed_names(scrape) | PROMETHEUS_OWN
    used = {("alerts.yaml", name) for rule in _alert_rules() for name in metric_names(rule["expr"])}
    used |= {("presence-svc.json", n) for expr in _dashboard_exprs() for n in metric_names(expr)}
    missing = sorted(f"{where}: {name}" for where, name in used if name not in exposed)
    assert not missing, "metrics not in /metrics:\n" + "\n".join(missing)
    # Each of the kit's topics is covered by the dashboard.
    shown = {name for _, name in used}
    for needed in (
        "presence_http_requests_total",
        "presence_http_request_seconds_bucket",
        "presence_refusals_total",
        "presence_views_total",
        "presence_ledger_lag_seconds",
        "presence_ledger_backlog",
        "presence_sse_listeners",
    ):
        assert needed in shown, needed


def test_the_checks_notice_broken_files(scrape: str) -> None:
    exposed = exposed_names(scrape)
    assert metric_names(
        'sum by (route) (rate(presence_http_requests_total{status=~"5.."}[$__rate_interval]))'
    ) == {"presence_http_requests_total"}
    assert metric_names("up{job='w'} == 0 or absent(up{job='w'})") == {"up"}
    misspelt = metric_names("max(presence_ledger_lag_second) > 300")
    assert misspelt == {"presence_ledger_lag_second"}
    assert not misspelt <= exposed
    assert "presence_http_request_seconds" not in exposed  # a histogram has no bare series
    assert "presence_http_request_seconds_bucket" in exposed
    rules = yaml.safe_load(ALERTS.read_text())
    rule = rules["groups"][0]["rules"][0]
    rule["for"], rule["expr"] = "five minutes", "sum(rate(x[5m])"
    del rule["annotations"]
    problems = "\n".join(rules_problems(rules))
    for needle in ("for must be a duration", "unbalanced", "annotations"):
        assert needle in problems
    dashboard = json.loads(DASHBOARD.read_text())
    dashboard["panels"][1]["targets"][0]["expr"] += " * $nowhere"
    assert "$nowhere is not a dashboard variable" in "\n".join(dashboard_problems(dashboard))
