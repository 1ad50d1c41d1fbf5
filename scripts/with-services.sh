#!/usr/bin/env bash
# with-services.sh CMD...: run CMD with a throwaway PostgreSQL and Redis on free ports, and PgBouncer in
# front of that PostgreSQL (transaction pooling) when pgbouncer is installed (`make test` installs it).
# Exports TEST_DATABASE_URL, TEST_REDIS_URL and TEST_PGBOUNCER_URL (the same server through PgBouncer; any
# database name); everything is torn down on exit, failure or Ctrl-C.
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
PGB_DIR="$WORK/pgbouncer"

cleanup() {
  status=$?
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
  [ -f "$PGB_DIR/pgbouncer.pid" ] && kill "$(cat "$PGB_DIR/pgbouncer.pid")" 2>/dev/null || true
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

# PgBouncer (it refuses to run as root: as nobody then, like PostgreSQL). Transaction pooling: a server
# connection serves one transaction at a time, then any other client (docs/scaling.md says what that needs).
PGBOUNCER=$(pgbouncer_bin || true)
if [ -n "$PGBOUNCER" ]; then
  PGB_PORT=$(free_port)
  mkdir -p "$PGB_DIR"
  [ "$(id -u)" = 0 ] && chown nobody "$PGB_DIR"
  echo '"hongli" ""' >"$PGB_DIR/users.txt"
  cat >"$PGB_DIR/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$PG_PORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = trust
auth_file = $PGB_DIR/users.txt
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 40
max_db_connections = 120
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = $PGB_DIR/pgbouncer.log
pidfile = $PGB_DIR/pgbouncer.pid
INI
  as_pg_user "$PGBOUNCER" -d "$PGB_DIR/pgbouncer.ini" || { cat "$PGB_DIR/pgbouncer.log" 2>/dev/null; die "PgBouncer did not start"; }
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PGB_PORT") 2>/dev/null && break; sleep 0.1; done
  echo "== PgBouncer (transaction pooling) on 127.0.0.1:$PGB_PORT"
  export TEST_PGBOUNCER_URL="postgresql+psycopg://hongli@127.0.0.1:$PGB_PORT/postgres"
fi

export TEST_DATABASE_URL="postgresql+psycopg://hongli@127.0.0.1:$PG_PORT/postgres"
export TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
"$@"
