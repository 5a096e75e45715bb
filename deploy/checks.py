#!/usr/bin/env python3
"""Structural checks of the deploy artefacts, run by deploy/test (which installs PyYAML).

Each subcommand prints one line per problem and exits 1 when there is any:

  checks.py dockerfile      deploy/Dockerfile and .dockerignore
  checks.py compose         deploy/compose.yaml and the hub's deploy/config.toml
  checks.py unit            deploy/systemd/stella-integrations.service
  checks.py dashboard       deploy/grafana/stella-integrations.json; writes its queries, with
                            the Grafana variables filled in, as a rules file for promtool (argv[2])
  checks.py metric-names    every metric the rules, their tests and the dashboard name is one
                            the daemon exports, as derived from the instruments in the source
  checks.py queries         prints the dashboard's queries (variables filled in), one a line
  checks.py names           prints the metric names the rules and the dashboard use
"""
import json
import os
import re
import sys
import tomllib
from urllib.parse import urlsplit

import yaml

ROOT = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
DEPLOY = os.path.join(ROOT, "deploy")
DATA_DIR = "/var/lib/stella-integrations"
CONFIG_DIR = "/etc/stella-integrations"
HEALTHCHECK = "/usr/local/bin/stella-integrations-healthcheck"
# The Grafana variables the dashboard may use, and what promtool sees in their place.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$tenant": ".*", "$type": ".*"}
METRIC = re.compile(r"\b(?:integration|process)_[a-z0-9_]+\b")

problems = []


def problem(message):
    problems.append(message)


def read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


# === Dockerfile ===

def dockerfile_instructions(text):
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        pending += " " + stripped.rstrip("\\").strip() if pending else stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            word, _, rest = pending.partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def check_dockerfile():
    ins = dockerfile_instructions(read("deploy", "Dockerfile"))
    froms = [args for word, args in ins if word == "FROM"]
    if len(froms) < 2 or not froms[0].endswith(" AS build") or not froms[-1].endswith(" AS runtime"):
        problem(f"Dockerfile: expected a build stage then a runtime stage, got FROM {froms}")
    last_from = max(i for i, (word, _) in enumerate(ins) if word == "FROM")
    runtime = ins[last_from:]
    words = {}
    for word, args in runtime:
        words.setdefault(word, []).append(args)
    user = (words.get("USER") or [""])[-1]
    if not user or user.split(":")[0] in ("0", "root"):
        problem(f"Dockerfile: the runtime stage must end as a non-root USER, got {user!r}")
    if not any(HEALTHCHECK in h and "CMD" in h for h in words.get("HEALTHCHECK", [])):
        problem(f"Dockerfile: HEALTHCHECK must run {HEALTHCHECK}")
    if not any(a.split()[-1] == HEALTHCHECK and "deploy/healthcheck.sh" in a for a in words.get("COPY", [])):
        problem(f"Dockerfile: deploy/healthcheck.sh must be copied to {HEALTHCHECK}")
    if not any("--from=build" in a and "/usr/local/bin/stella-integrations" in a for a in words.get("COPY", [])):
        problem("Dockerfile: the runtime stage must copy the binary from the build stage")
    env = " ".join(words.get("ENV", []))
    m = re.search(r"STELLA_HTTP_LISTEN=\S*:(\d+)", env)
    exposed = " ".join(words.get("EXPOSE", [])).split()
    if not m or m.group(1) not in exposed:
        problem(f"Dockerfile: ENV STELLA_HTTP_LISTEN's port must be EXPOSEd (EXPOSE {exposed})")
    if "DATABASE_URL" in env:
        problem("Dockerfile: ENV DATABASE_URL would override the configuration file's [database] url")
    if not any(DATA_DIR in v for v in words.get("VOLUME", [])):
        problem(f"Dockerfile: {DATA_DIR} must be a VOLUME (the root file system is read-only)")
    if words.get("WORKDIR", [""])[-1] != DATA_DIR:
        problem(f"Dockerfile: WORKDIR must be {DATA_DIR}, where the default SQLite catalog goes")
    for word in ("ENTRYPOINT", "CMD"):
        for args in words.get(word, []):
            try:
                json.loads(args)
            except ValueError:
                problem(f"Dockerfile: {word} must be in exec (JSON) form: {args}")
    ignored = {line.strip() for line in read(".dockerignore").splitlines()}
    for entry in (".git", "**/target", "**/node_modules"):
        if entry not in ignored:
            problem(f".dockerignore: {entry} must be excluded from the build context")


# === compose ===

def check_compose():
    compose = yaml.safe_load(read("deploy", "compose.yaml"))
    services = compose.get("services", {})
    if set(services) != {"hub", "postgres", "openbao", "nats"}:
        problem(f"compose: expected services hub, postgres, openbao, nats; got {sorted(services)}")
        return
    for name, svc in services.items():
        image = svc.get("image", "")
        if name != "hub" and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
            problem(f"compose: {name}: pin the image to a version, got {image!r}")
        if name != "hub" and "healthcheck" not in svc:
            problem(f"compose: {name}: needs a healthcheck (the hub waits for it)")
        if svc.get("privileged") or svc.get("network_mode") == "host":
            problem(f"compose: {name}: no privileged containers, no host network")
        for port in svc.get("ports", []):
            if not str(port).startswith("127.0.0.1:"):
                problem(f"compose: {name}: publish on loopback only, got {port!r}")
        for env_name, value in (svc.get("environment") or {}).items():
            if re.search(r"PASSWORD|TOKEN", env_name) and not re.fullmatch(r"\$\{\w+:\?[^}]*\}", str(value)):
                problem(f"compose: {name}: {env_name} must come from a required variable (${{VAR:?…}})")
        for volume in svc.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith(".") and not os.path.exists(os.path.join(DEPLOY, source)):
                problem(f"compose: {name}: {source} does not exist")

    hub = services["hub"]
    build = hub.get("build", {})
    if build.get("context") != ".." or build.get("dockerfile") != "deploy/Dockerfile":
        problem("compose: hub: build deploy/Dockerfile with the repository root as context")
    if hub.get("read_only") is not True:
        problem("compose: hub: read_only must be true")
    if "ALL" not in hub.get("cap_drop", []):
        problem("compose: hub: cap_drop must include ALL")
    if "no-new-privileges:true" not in hub.get("security_opt", []):
        problem("compose: hub: security_opt must include no-new-privileges:true")
    if "/tmp" not in hub.get("tmpfs", []):
        problem("compose: hub: /tmp must be a tmpfs (the root file system is read-only)")
    env = hub.get("environment", {})
    for key in ("STELLA_CONFIG", "DATABASE_URL", "VAULT_ADDR", "VAULT_TOKEN"):
        if key not in env:
            problem(f"compose: hub: environment must set {key}")
    mounts = {str(v).split(":")[1]: str(v) for v in hub.get("volumes", [])}
    config_mount = mounts.get(env.get("STELLA_CONFIG", ""), "")
    if not config_mount.startswith("./config.toml:") or not config_mount.endswith(":ro"):
        problem(f"compose: hub: STELLA_CONFIG must name ./config.toml mounted read-only, got {config_mount!r}")
    if DATA_DIR not in mounts:
        problem(f"compose: hub: a volume must hold {DATA_DIR}")
    depends = hub.get("depends_on", {})
    for other in ("postgres", "openbao", "nats"):
        if (depends.get(other) or {}).get("condition") != "service_healthy":
            problem(f"compose: hub: must wait for {other} to be healthy")

    pg = services["postgres"]
    pg_env = pg.get("environment", {})
    url = urlsplit(re.sub(r"\$\{[^}]*\}", "PASSWORD", env.get("DATABASE_URL", "")))
    if url.hostname != "postgres" or url.path.lstrip("/") != pg_env.get("STELLA_DB_NAME"):
        problem(f"compose: hub: DATABASE_URL must reach postgres's STELLA_DB_NAME, got {url.hostname}{url.path}")
    if url.username != pg_env.get("STELLA_DB_USER") or url.username == pg_env.get("POSTGRES_USER"):
        problem("compose: hub: DATABASE_URL must connect as STELLA_DB_USER, the role without "
                "superuser or BYPASSRLS, never as POSTGRES_USER")
    if not any(str(v).startswith("./postgres/init-app-role.sh:/docker-entrypoint-initdb.d/")
               and str(v).endswith(":ro") for v in pg.get("volumes", [])):
        problem("compose: postgres: init-app-role.sh must be mounted read-only into /docker-entrypoint-initdb.d")
    if not os.access(os.path.join(DEPLOY, "postgres", "init-app-role.sh"), os.X_OK):
        problem("compose: postgres/init-app-role.sh must be executable (the image then runs it, not sources it)")
    if urlsplit(env.get("VAULT_ADDR", "")).hostname != "openbao":
        problem("compose: hub: VAULT_ADDR must reach the openbao service")
    if "-js" not in services["nats"].get("command", []):
        problem("compose: nats: JetStream must be on (-js)")

    config = tomllib.loads(read("deploy", "config.toml"))
    nats_url = urlsplit(config.get("events", {}).get("nats", {}).get("url", ""))
    if (nats_url.hostname, nats_url.port) != ("nats", 4222):
        problem(f"config.toml: [events.nats] url must reach the nats service, got {nats_url.geturl()!r}")
    if "url" in config.get("database", {}):
        problem("config.toml: leave [database] url to DATABASE_URL, which holds the password")


# === systemd unit ===

def check_unit():
    sections, current = {}, None
    for line in read("deploy", "systemd", "stella-integrations.service").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    service = sections.get("Service", {})
    required = {
        "DynamicUser": "yes", "StateDirectory": "stella-integrations", "ProtectSystem": "strict",
        "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "MemoryDenyWriteExecute": "yes", "LockPersonality": "yes", "Restart": "on-failure",
        "WorkingDirectory": DATA_DIR,
    }
    for key, value in required.items():
        if service.get(key, [None])[-1] != value:
            problem(f"unit: {key}={value} is required, got {service.get(key)}")
    if "@system-service" not in service.get("SystemCallFilter", []):
        problem("unit: SystemCallFilter=@system-service is required")
    if CONFIG_DIR not in " ".join(service.get("ReadOnlyPaths", [])):
        problem(f"unit: ReadOnlyPaths must hold {CONFIG_DIR}")
    exec_start = " ".join(service.get("ExecStart", []))
    if f"--config {CONFIG_DIR}/config.toml" not in exec_start:
        problem(f"unit: ExecStart must pass --config {CONFIG_DIR}/config.toml")
    if "ExecReload" in service:
        problem("unit: the daemon cannot reload its configuration: no ExecReload")


# === Grafana dashboard ===

def dashboard():
    return json.loads(read("deploy", "grafana", "stella-integrations.json"))


def fill(expr):
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace("${" + var[1:] + "}", value).replace(var, value)
    return expr


def dashboard_queries(d):
    for panel in d.get("panels", []):
        for target in panel.get("targets", []):
            yield panel, target


def check_dashboard(rules_out):
    d = dashboard()
    if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
        problem(f"dashboard: schemaVersion must be a number ≥ 36, got {d.get('schemaVersion')!r}")
    for key in ("uid", "title"):
        if not d.get(key):
            problem(f"dashboard: {key} is missing")
    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    ds_var = variables.get("datasource", {})
    if ds_var.get("type") != "datasource" or ds_var.get("query") != "prometheus":
        problem("dashboard: a `datasource` variable of Prometheus data sources is required")
    ids, cells = set(), {}
    for panel in d.get("panels", []):
        pid, title = panel.get("id"), panel.get("title")
        if pid in ids:
            problem(f"dashboard: panel id {pid} is used twice")
        ids.add(pid)
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in "hwxy") or grid["x"] + grid["w"] > 24:
            problem(f"dashboard: panel {title!r}: bad gridPos {grid}")
            continue
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                if (x, y) in cells:
                    problem(f"dashboard: panel {title!r} overlaps {cells[(x, y)]!r}")
                    break
                cells[(x, y)] = title
            else:
                continue
            break
        if panel.get("type") == "row":
            continue
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            problem(f"dashboard: panel {title!r}: datasource must be the ${{datasource}} variable")
        targets = panel.get("targets") or []
        if not targets:
            problem(f"dashboard: panel {title!r} has no targets")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or None in refs:
            problem(f"dashboard: panel {title!r}: every target needs its own refId, got {refs}")
        for t in targets:
            if not t.get("expr"):
                problem(f"dashboard: panel {title!r} target {t.get('refId')}: no expr")
            if t.get("datasource", {}).get("uid") != "${datasource}":
                problem(f"dashboard: panel {title!r} target {t.get('refId')}: datasource must be ${{datasource}}")
            for var in re.findall(r"\$\{?(\w+)", t.get("expr", "")):
                if var not in variables and "$" + var not in GRAFANA_VARS:
                    problem(f"dashboard: panel {title!r} uses ${var}, which is not defined")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel_{panel['id']}_{t['refId']}", "expr": fill(t["expr"])}
        for panel, t in dashboard_queries(d) if t.get("expr")]}]}
    with open(rules_out, "w", encoding="utf-8") as f:
        yaml.safe_dump(rules, f, sort_keys=False)


# === metric names ===

def exported_names():
    """The /metrics names of every instrument in the source, as daemon/src/telemetry/
    exposition.rs maps them: _total added to counters, _bucket, _sum and _count to
    histograms. Unit suffixes are not derived: the instruments these files use are named
    with theirs already (…_seconds, …_bytes); dotted OpenTelemetry names are not matched."""
    pattern = re.compile(r"\.(u64|f64|i64)_(observable_)?(counter|up_down_counter|gauge|histogram)"
                         r"\(\s*\"([a-z0-9_]+)\"")
    names = set()
    for crate in ("actors", "daemon", "connectors"):
        for folder, _, files in os.walk(os.path.join(ROOT, crate, "src")):
            for name in files:
                if not name.endswith(".rs"):
                    continue
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    for m in pattern.finditer(f.read()):
                        kind, metric = m.group(3), m.group(4)
                        if kind == "counter":
                            names.add(metric + "_total")
                        elif kind == "histogram":
                            names.update(metric + s for s in ("_bucket", "_sum", "_count"))
                        else:
                            names.add(metric)
    return names


def used_names():
    """Metric name -> where it is used, in the rules, their tests and the dashboard."""
    used = {}
    rules = yaml.safe_load(read("deploy", "prometheus", "alerts.yaml"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            for name in METRIC.findall(rule["expr"]):
                used.setdefault(name, set()).add(f"alerts.yaml {rule.get('alert')}")
    tests = yaml.safe_load(read("deploy", "prometheus", "alerts.test.yaml"))
    for test in tests["tests"]:
        for series in test.get("input_series", []):
            for name in METRIC.findall(series["series"].split("{")[0]):
                used.setdefault(name, set()).add("alerts.test.yaml")
    d = dashboard()
    for panel, t in dashboard_queries(d):
        for name in METRIC.findall(t.get("expr", "")):
            used.setdefault(name, set()).add(f"dashboard {panel.get('title')!r}")
    for var in d.get("templating", {}).get("list", []):
        for name in METRIC.findall(json.dumps(var.get("query", ""))):
            used.setdefault(name, set()).add(f"dashboard variable {var.get('name')}")
    return used


def check_metric_names():
    exported = exported_names()
    if not exported:
        problem("metric-names: no instrument found in the source; has the exporter moved?")
    for name, where in sorted(used_names().items()):
        if name not in exported:
            problem(f"metric-names: {name} is not exported by the daemon (used in {', '.join(sorted(where))})")


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "dockerfile":
        check_dockerfile()
    elif command == "compose":
        check_compose()
    elif command == "unit":
        check_unit()
    elif command == "dashboard" and len(sys.argv) == 3:
        check_dashboard(sys.argv[2])
    elif command == "metric-names":
        check_metric_names()
    elif command == "queries":
        for _, t in dashboard_queries(dashboard()):
            print(fill(t["expr"]))
        return 0
    elif command == "names":
        print("\n".join(sorted(used_names())))
        return 0
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for p in problems:
        print(p)
    if not problems:
        print(f"checks.py {command}: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
