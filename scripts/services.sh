#!/usr/bin/env bash
# Postgres and Redis for `make test`: start them when installed but stopped, or name what is missing.
set -uo pipefail

wait_for() {  # name, probe command...
  local name=$1; shift
  for _ in $(seq 1 30); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "error: $name did not come up" >&2; return 1
}

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "Starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    wait_for PostgreSQL pg_isready -h 127.0.0.1 -p 5432 -q || exit 1
  else
    echo "error: PostgreSQL is not running at 127.0.0.1:5432 and is not installed (apt-get install postgresql)" >&2
    exit 1
  fi
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  if command -v redis-server >/dev/null; then
    echo "Starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping || exit 1
  else
    echo "error: Redis is not running at 127.0.0.1:6379 and is not installed (apt-get install redis-server)" >&2
    exit 1
  fi
fi
