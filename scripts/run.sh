#!/usr/bin/env bash
# `make run`: the whole system in the foreground — Redis, web (gunicorn), worker with scheduler
# and periodic jobs, and the WeChat sandbox — on SQLite. One Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
FLASK=".venv/bin/flask --app wsgi"
WEB_BIND=${HONGLI_RUN_BIND:-127.0.0.1:8000}
SANDBOX_PORT=${HONGLI_SANDBOX_PORT:-8900}
. scripts/lib.sh

# 1. Configuration first: a bad config.toml or HONGLI_* value stops us before anything starts.
$PYTHON -c "from wsgi import create_app; create_app()" || exit 2
REDIS_URL=$($PYTHON -c "from app.settings import load_settings; print(load_settings().redis.url)")

mkdir -p instance/redis instance/log
PIDS=()
STOPPING=
stop_all() {
  trap - EXIT INT TERM
  STOPPING=1
  echo; echo "hongli: stopping…"
  # Each service runs in its own process group (setsid): signal whole groups, newest first, so the
  # web and worker stop before the Redis they use; whatever is still alive after 15 s is killed.
  for ((i=${#PIDS[@]}-1; i>=0; i--)); do
    pid=${PIDS[i]}
    kill -TERM -- "-$pid" 2>/dev/null || continue
    for _ in $(seq 150); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap stop_all EXIT INT TERM

# start NAME CMD...: run CMD in its own process group, output to the terminal and instance/log/NAME.log.
start() {
  local name=$1; shift
  setsid bash -c '"$@" 2>&1 | tee "instance/log/$0.log"' "$name" "$@" &
  PIDS+=($!)
}

# 2. Redis: reuse one that answers at the configured URL, else start a local one (noeviction, AOF).
if ! $PYTHON -c "import redis,sys; redis.Redis.from_url(sys.argv[1]).ping()" "$REDIS_URL" 2>/dev/null; then
  read -r RHOST RPORT < <($PYTHON -c "from urllib.parse import urlsplit; import sys; u=urlsplit(sys.argv[1]); print(u.hostname, u.port or 6379)" "$REDIS_URL")
  case "$RHOST" in 127.0.0.1|localhost) ;; *) die "Redis at $REDIS_URL does not answer";; esac
  ensure_redis_server
  start redis redis-server --bind 127.0.0.1 --port "$RPORT" --dir "$PWD/instance/redis" --appendonly yes \
    --maxmemory-policy noeviction --daemonize no --loglevel warning
  for _ in $(seq 50); do $PYTHON -c "import redis,sys; redis.Redis.from_url(sys.argv[1]).ping()" "$REDIS_URL" 2>/dev/null && break; sleep 0.2; done
fi

# 3. Database: create/upgrade the SQLite schema (idempotent).
$FLASK db upgrade >instance/log/migrate.log 2>&1 || { cat instance/log/migrate.log; exit 1; }

# 4. The processes. Output is interleaved here and also written to instance/log/.
# The sandbox keeps its state across restarts, so the demo merchant's keys stay valid.
start sandbox "$PYTHON" -m wechat.sandbox --host 127.0.0.1 --port "$SANDBOX_PORT" \
  --state-file instance/sandbox-state.json
for _ in $(seq 100); do
  $PYTHON -c "import requests,sys; requests.get(sys.argv[1], timeout=1).raise_for_status()" \
    "http://127.0.0.1:$SANDBOX_PORT/_sandbox/clock" 2>/dev/null && break
  sleep 0.2
done

# 5. A demo merchant registered in the sandbox, its owner's console login and a shop key (once).
$FLASK merchants seed-demo
CREDENTIALS=instance/demo-credentials.txt
if [ ! -f "$CREDENTIALS" ]; then
  PASSWORD=$($PYTHON -c "import secrets; print(secrets.token_urlsafe(12))")
  echo "$PASSWORD" | $FLASK staff create --email owner@demo-tea.test --name "Demo owner" \
    --merchant demo-tea --role owner --password-stdin >/dev/null
  SHOP_KEY=$($FLASK shop-keys create --merchant demo-tea --name "demo shop" 2>/dev/null | tail -1 || true)
  umask 077
  printf 'console login: owner@demo-tea.test / %s\nshop API key: %s\n' "$PASSWORD" "$SHOP_KEY" > "$CREDENTIALS"
fi
start web .venv/bin/gunicorn --bind "$WEB_BIND" --workers 2 --threads 4 --preload 'wsgi:create_app()'
start worker $FLASK worker

cat <<MSG

  Hongli is starting:
    web            http://$WEB_BIND/          (health: /healthz, readiness: /readyz)
    API reference  http://$WEB_BIND/docs      (OpenAPI: /openapi.json)
    WeChat sandbox http://127.0.0.1:$SANDBOX_PORT/   (admin API: /_sandbox/, see docs/sandbox.md)
    worker         RQ with scheduler and periodic jobs
    demo logins    $CREDENTIALS (console owner, shop API key)
    logs           instance/log/
  Ctrl-C stops everything.

MSG
wait -n "${PIDS[@]}" || true
[ -n "$STOPPING" ] && exit 0
echo "hongli: a process exited (see instance/log/); stopping the rest" >&2
exit 1
