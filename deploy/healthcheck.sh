#!/bin/sh
# The container image's HEALTHCHECK: GET /readyz (database reachable, migrations applied) on the
# address the daemon listens on, STELLA_HTTP_LISTEN (host:port, [v6]:port, or a wildcard, which
# is reached on loopback). POSIX sh: the runtime image has dash, not bash.
set -eu

listen=${STELLA_HTTP_LISTEN:-127.0.0.1:8080}
port=${listen##*:}
host=${listen%:*}
case $host in
  0.0.0.0 | '') host=127.0.0.1 ;;
  '[::]') host='[::1]' ;;
esac
exec curl --fail --silent --show-error --max-time "${STELLA_HEALTHCHECK_TIMEOUT_S:-4}" \
  --output /dev/null "http://$host:$port/readyz"
