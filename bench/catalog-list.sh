#!/usr/bin/env bash
# Benchmark: GET /api/v1/integrations?type=X on PostgreSQL with 100,000 integrations over 100
# tenants, keep-alive load from wrk on loopback, against (a) the daemon (actors, auth, tenancy,
# row-level security) and (b) a bare poem handler running the same query on the pool.
# Prints requests/s, p50 and p99 of each and the throughput ratio.
#
# The daemon's health engine is off by default (`[health] enabled = false`): the seeded
# integrations point at hosts that do not resolve, and monitoring 100,000 of them is a
# workload of its own on the same two cores, not part of the API path being compared.
# BENCH_HEALTH=on runs the daemon with the engine monitoring every seeded integration.
#
# Usage: [BENCH_HEALTH=on] bench/catalog-list.sh [DURATION_SECONDS] [CONNECTIONS]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DURATION=${1:-20}
CONNECTIONS=${2:-32}
COUNT=${BENCH_COUNT:-100000}
TENANTS=${BENCH_TENANTS:-100}
HEALTH=${BENCH_HEALTH:-off}
OUT=$ROOT/bench/out
mkdir -p "$OUT"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
scripts/postgres-up >/dev/null
cargo build --release --locked -q -p daemon -p bench

DB=stella_bench_list
PSQL="psql -q -h 127.0.0.1 -U postgres -d postgres"
$PSQL -c "DO \$\$ BEGIN CREATE ROLE stella_app LOGIN NOSUPERUSER NOBYPASSRLS; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END \$\$"
$PSQL -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB OWNER stella_app"
APP_URL="postgres://stella_app@127.0.0.1:5432/$DB"
ADMIN_URL="postgres://postgres@127.0.0.1:5432/$DB"
DATABASE_URL=$APP_URL target/release/stella-integrations migrate
target/release/seed "$ADMIN_URL" "$COUNT" "$TENANTS"
psql -q -h 127.0.0.1 -U postgres -d $DB -c "ANALYZE"

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port_daemon=18181
port_bare=18182
{
  echo "[http]"
  echo "listen = \"127.0.0.1:$port_daemon\""
  echo "[database]"
  echo "url = \"$APP_URL\""
  echo "max_connections = 16"
  echo "[log]"
  echo "filter = \"warn\""
  echo "[auth.rate_limit]"
  echo "per_second = 0"
  echo "[health]"
  if [ "$HEALTH" = on ]; then echo "enabled = true"; else echo "enabled = false"; fi
  for t in $(seq 0 $((TENANTS - 1))); do
    tenant=$(printf 't%03d' "$t")
    echo "[[auth.api_keys]]"
    echo "id = \"bench-$tenant\""
    echo "tenant = \"$tenant\""
    echo "scopes = [\"integrations:read\"]"
    echo "sha256 = \"$(printf %s "bench-key-$tenant" | sha256sum | cut -d' ' -f1)\""
  done
} >"$work/config.toml"
target/release/stella-integrations --config "$work/config.toml" 2>"$work/daemon.log" &
target/release/bare-list "$ADMIN_URL" "127.0.0.1:$port_bare" &
for port in $port_daemon $port_bare; do
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.1
  done
done

# Each request goes to the next tenant, so load spreads over all of them.
cat >"$work/daemon.lua" <<LUA
local n = 0
request = function()
  n = n + 1
  local t = string.format("t%03d", n % $TENANTS)
  return wrk.format("GET", "/api/v1/integrations?type=gitlab", {["Authorization"] = "Bearer bench-key-" .. t})
end
LUA
cat >"$work/bare.lua" <<LUA
local n = 0
request = function()
  n = n + 1
  local t = string.format("t%03d", n % $TENANTS)
  return wrk.format("GET", "/list/" .. t .. "?type=gitlab")
end
LUA

# Sanity: both answer 50 items for a tenant.
curl -fs -H "Authorization: Bearer bench-key-t001" "http://127.0.0.1:$port_daemon/api/v1/integrations?type=gitlab" | python3 -c 'import json,sys; assert len(json.load(sys.stdin)["items"]) == 50'
curl -fs "http://127.0.0.1:$port_bare/list/t001?type=gitlab" | python3 -c 'import json,sys; assert len(json.load(sys.stdin)["items"]) == 50'

run() { # name port script
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$3" "http://127.0.0.1:$2" >"$OUT/$1.txt"
  local rps p50 p99 errors
  rps=$(awk '/Requests\/sec/ {print $2}' "$OUT/$1.txt")
  p50=$(awk '$1 == "50%" {print $2}' "$OUT/$1.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$OUT/$1.txt")
  errors=$(awk '/Non-2xx/ {print $5}' "$OUT/$1.txt")
  printf '%-8s %10s req/s   p50 %-9s p99 %-9s non-2xx %s\n' "$1" "$rps" "$p50" "$p99" "${errors:-0}"
  echo "$rps" >"$OUT/$1.rps"
}

echo "catalog list on PostgreSQL: $COUNT integrations, $TENANTS tenants, $CONNECTIONS connections, ${DURATION}s each, health engine $HEALTH"
run warmup $port_daemon "$work/daemon.lua" >/dev/null
run bare $port_bare "$work/bare.lua"
run daemon $port_daemon "$work/daemon.lua"
run bare2 $port_bare "$work/bare.lua"
run daemon2 $port_daemon "$work/daemon.lua"
python3 - "$OUT" <<'PY'
import sys, pathlib
out = pathlib.Path(sys.argv[1])
r = lambda n: float((out / f"{n}.rps").read_text())
bare = (r("bare") + r("bare2")) / 2
daemon = (r("daemon") + r("daemon2")) / 2
print(f"ratio daemon/bare: {daemon / bare:.2f} (daemon {daemon:.0f} req/s, bare {bare:.0f} req/s)")
PY
