#!/usr/bin/env bash
# Compiles and tests the JetBrains plugin's core module without Gradle, on a fresh Debian machine:
#   Kotlin compiler from npm (pinned in package.json / package-lock.json), JUnit 5 and the Java
#   libraries from Debian, the shared fake Orchestrator/Authority (node) and the real daemon.
# Ends with "N passed, M failed"; exits non-zero on any failure.
# Env: STELLA_DAEMON_BIN (default ../../target/debug/stella-integrations), KEEP_WORK=1 keeps the temp dir,
#      STELLA_TEST_REPORTS=<dir> receives the JUnit XML reports and the backend logs.
# The IDE module (ide/) needs the IntelliJ Platform SDK and is NOT compiled here; see README.md.
# Usage: extensions/jetbrains-stella-ops/ci.sh [JUnit selectors]   (from anywhere; root or sudo for apt-get)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
cd "$HERE"
export DEBIAN_FRONTEND=noninteractive

log() { printf '[jetbrains-ci] %s\n' "$*" >&2; }
# A setup step failed: say why, keep the summary line format, exit non-zero.
die() { log "$*"; echo "0 passed, 1 failed"; exit 1; }

# ---------- toolchain ----------
DEBS=(junit5 libyaml-snake-java libjackson2-databind-java libjackson2-core-java libjackson2-annotations-java)
missing=()
for p in "${DEBS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
command -v java >/dev/null 2>&1 || missing+=(default-jdk-headless)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  for i in $(seq 1 30); do   # bounded wait for another apt/dpkg holding the lock
    if $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then break; fi
    [ "$i" -eq 30 ] && die "apt-get failed"
    sleep 5
  done
fi
if [ ! -x node_modules/kotlin-compiler/bin/kotlinc ]; then
  log "npm ci (kotlin-compiler)"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null || die "npm ci failed"
fi
KOTLINC="$HERE/node_modules/kotlin-compiler/bin/kotlinc"
KLIB="$HERE/node_modules/kotlin-compiler/lib"
J=/usr/share/java
LIBS="$J/jackson-databind.jar:$J/jackson-core.jar:$J/jackson-annotations.jar:$J/snakeyaml.jar"
JUNIT_API="$J/junit-jupiter-api.jar:$J/junit-platform-commons.jar:$J/apiguardian-api.jar:$J/opentest4j.jar"

WORK="$(mktemp -d /tmp/jetbrains-stella-ci.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP_WORK:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# ---------- compile ----------
log "kotlinc $("$KOTLINC" -version 2>&1 | sed -n 's/.*kotlinc-jvm \([^ ]*\).*/\1/p')"
log "compiling core"
"$KOTLINC" -nowarn -jvm-target 17 -cp "$LIBS" core/src/main/kotlin -d "$WORK/main" || die "core does not compile"
log "compiling core tests"
"$KOTLINC" -nowarn -jvm-target 17 -cp "$LIBS:$WORK/main:$JUNIT_API" core/src/test/kotlin -d "$WORK/test" || die "core tests do not compile"

# ---------- backends ----------
# a free loopback port (bounded attempts)
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' 2>/dev/null \
    || node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
wait_http() { # url seconds
  local deadline=$(( $(date +%s) + $2 ))
  until curl -fsS -o /dev/null "$1" 2>/dev/null; do
    [ "$(date +%s)" -ge "$deadline" ] && return 1
    sleep 0.2
  done
}

FAKE="$REPO/extensions/contracts/fake-server/server.mjs"
[ -f "$FAKE" ] || die "missing $FAKE"
FAKE_PORT="$(free_port)"
node "$FAKE" --port "$FAKE_PORT" --quiet >"$WORK/fake.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$FAKE_PORT/_control/health" 20 || { cat "$WORK/fake.log" >&2; die "fake server did not start"; }
export STELLA_FAKE_URL="http://127.0.0.1:$FAKE_PORT"
log "fake Orchestrator/Authority at $STELLA_FAKE_URL"

# the real daemon, with a fresh SQLite database and one API key
DAEMON_BIN="${STELLA_DAEMON_BIN:-$REPO/target/debug/stella-integrations}"
case "$DAEMON_BIN" in /*) ;; *) DAEMON_BIN="$HERE/$DAEMON_BIN" ;; esac
if [ ! -x "$DAEMON_BIN" ] && command -v cargo >/dev/null 2>&1; then
  log "building the daemon ($DAEMON_BIN missing)"
  (cd "$REPO" && timeout 1200 cargo build -q -p daemon --bin stella-integrations) || true
fi
[ -x "$DAEMON_BIN" ] || die "daemon binary not found: $DAEMON_BIN (set STELLA_DAEMON_BIN)"
DAEMON_PORT="$(free_port)"
DAEMON_KEY="jb-ci-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
DAEMON_SHA="$(printf '%s' "$DAEMON_KEY" | sha256sum | cut -d' ' -f1)"
mkdir -p "$WORK/daemon"
cat >"$WORK/daemon/config.toml" <<TOML
[http]
listen = "127.0.0.1:$DAEMON_PORT"

[database]
url = "sqlite://$WORK/daemon/db.sqlite?mode=rwc"

# One failed check makes an integration unhealthy and one good check healthy again, so the event stream tests
# change a status with one on-demand check; reminders every second give the de-duplication test real ones.
[health]
unhealthy_after = 1
healthy_after = 1

[events.alerts]
reminder_interval_seconds = 1

[[auth.api_keys]]
id = "jetbrains-ci"
tenant = "acme"
scopes = ["integrations:read", "integrations:write"]
sha256 = "$DAEMON_SHA"
TOML
# the config file is authoritative here: drop overrides that may be set in the caller's environment
# run a private copy, so that a rebuild of target/ during the run cannot touch the process under test
cp "$DAEMON_BIN" "$WORK/daemon/daemon-under-test"
(cd "$WORK/daemon" && exec env -u DATABASE_URL -u STELLA_HTTP_LISTEN -u STELLA_CONFIG ./daemon-under-test --config "$WORK/daemon/config.toml") >"$WORK/daemon.log" 2>&1 &
PIDS+=($!)
if ! wait_http "http://127.0.0.1:$DAEMON_PORT/healthz" 60; then
  tail -30 "$WORK/daemon.log" >&2; die "daemon did not start"
fi
export STELLA_DAEMON_URL="http://127.0.0.1:$DAEMON_PORT"
export STELLA_DAEMON_KEY="$DAEMON_KEY"
log "daemon $DAEMON_BIN at $STELLA_DAEMON_URL"

export STELLA_FIXTURES_DIR="$REPO/extensions/fixtures"
export STELLA_SCHEMA="$REPO/extensions/schema/stella.schema.json"
export STELLA_CONTRACT="$REPO/extensions/contracts/orchestrator-authority.openapi.yaml"
export STELLA_OPENAPI="$REPO/openapi.json"

# ---------- tests ----------
# Arguments, if any, select tests (e.g. --select-class org.stellaops.core.AuthTest); default: all.
if [ $# -gt 0 ]; then SELECT=("$@"); else SELECT=(--scan-classpath "$WORK/test"); fi
log "running JUnit 5"
set +e
timeout 600 java -jar "$J/junit-platform-console-standalone.jar" \
  -cp "$LIBS:$KLIB/kotlin-stdlib.jar:$WORK/main:$WORK/test" \
  "${SELECT[@]}" --include-engine junit-jupiter \
  --disable-banner --disable-ansi-colors --details=tree \
  --reports-dir "$WORK/reports" 2>&1 | tee "$WORK/junit.txt"
rc=${PIPESTATUS[0]}
set -e
if [ -n "${STELLA_TEST_REPORTS:-}" ]; then
  mkdir -p "$STELLA_TEST_REPORTS" && cp -r "$WORK/reports/." "$STELLA_TEST_REPORTS/" 2>/dev/null || true
  cp "$WORK/fake.log" "$WORK/daemon.log" "$STELLA_TEST_REPORTS/" 2>/dev/null || true
fi
passed=$(sed -n 's/.*\[ *\([0-9]*\) tests successful.*/\1/p' "$WORK/junit.txt" | tail -1)
failed=$(sed -n 's/.*\[ *\([0-9]*\) tests failed.*/\1/p' "$WORK/junit.txt" | tail -1)
passed=${passed:-0}; failed=${failed:-0}
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
