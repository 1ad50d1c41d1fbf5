#!/usr/bin/env bash
# with-services.sh CMD...: run CMD with a throwaway PostgreSQL and Redis on free ports.
# Exports TEST_DATABASE_URL and TEST_REDIS_URL; everything is torn down on exit, failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
. scripts/lib.sh

ensure_redis_server
BIN=$(pg_bindir)
WORK=$(mktemp -d /tmp/hongli-services.XXXXXX)
chmod 755 "$WORK"
PG_PORT=$(free_port)
REDIS_PORT=$(free_port)
PGDATA="$WORK/pg"
REDIS_PID=

cleanup() {
  status=$?
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
  [ -d "$PGDATA" ] && as_pg_user "$BIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit $status
}
trap cleanup EXIT INT TERM

echo "== throwaway PostgreSQL on 127.0.0.1:$PG_PORT, Redis on 127.0.0.1:$REDIS_PORT"
mkdir -p "$PGDATA"
[ "$(id -u)" = 0 ] && chown nobody "$PGDATA"
as_pg_user "$BIN/initdb" -D "$PGDATA" -U hongli -A trust -E UTF8 --no-locale >"$WORK/initdb.log" 2>&1 \
  || { cat "$WORK/initdb.log"; die "initdb failed"; }
# Durability is off: this database lives for one run only.
as_pg_user "$BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 \
  -o "-h 127.0.0.1 -p $PG_PORT -k $PGDATA -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
  start >/dev/null || { cat "$PGDATA/server.log"; die "PostgreSQL did not start"; }
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --maxmemory-policy noeviction --dir "$WORK" --daemonize no >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$REDIS_PORT" ping >/dev/null || die "Redis did not start"

export TEST_DATABASE_URL="postgresql+psycopg://hongli@127.0.0.1:$PG_PORT/postgres"
export TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
"$@"
