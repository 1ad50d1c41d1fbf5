#!/usr/bin/env bash
# `make run`: the whole system in the foreground — Redis, web (gunicorn), worker with scheduler
# and periodic jobs, and the WeChat sandbox — on SQLite. One Ctrl-C (or a TERM to the process group)
# stops everything.
#
# Where it runs is chosen by make run's own variables (README, "Two commands"). They are not settings:
# they are read here and removed from the environment before any Python process starts.
#   HONGLI_RUN_HOST          bind address of the web and the sandbox      127.0.0.1
#   HONGLI_RUN_WEB_PORT      web (gunicorn)                                8000
#   HONGLI_RUN_SANDBOX_PORT  WeChat sandbox                                8900
#   HONGLI_RUN_REDIS_PORT    the local Redis this script starts            6390
#   HONGLI_RUN_INSTANCE      SQLite file, sandbox state, Redis data, logs  instance (instance/port-N for web port N ≠ 8000)
# From them it derives the settings every process needs — web.public_base_url, the three wechat.*_base_url,
# redis.url, database.url — and exports them as HONGLI_<SECTION>__<KEY>, except those you set yourself
# (in config.toml or the environment) to something other than the built-in default.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
FLASK=".venv/bin/flask --app wsgi"
. scripts/lib.sh

# 0. make run's variables: read, checked, and removed before the settings loader (which refuses them) runs.
HOST=${HONGLI_RUN_HOST:-127.0.0.1}
WEB_PORT=${HONGLI_RUN_WEB_PORT:-8000}
SANDBOX_PORT=${HONGLI_RUN_SANDBOX_PORT:-8900}
REDIS_PORT=${HONGLI_RUN_REDIS_PORT:-6390}
INSTANCE=${HONGLI_RUN_INSTANCE:-}
for name in $(compgen -e HONGLI_RUN_ || true); do
  case $name in
    HONGLI_RUN_HOST | HONGLI_RUN_WEB_PORT | HONGLI_RUN_SANDBOX_PORT | HONGLI_RUN_REDIS_PORT | HONGLI_RUN_INSTANCE)
      unset "$name" ;;
    *) die "unknown variable $name (make run reads HONGLI_RUN_HOST, HONGLI_RUN_WEB_PORT, HONGLI_RUN_SANDBOX_PORT, HONGLI_RUN_REDIS_PORT, HONGLI_RUN_INSTANCE)" ;;
  esac
done
for var in WEB_PORT SANDBOX_PORT REDIS_PORT; do
  port=${!var}
  [[ $port =~ ^[1-9][0-9]{0,4}$ ]] && ((port <= 65535)) || die "HONGLI_RUN_$var must be a TCP port (1-65535), not '$port'"
done
[ "$WEB_PORT" != "$SANDBOX_PORT" ] && [ "$WEB_PORT" != "$REDIS_PORT" ] && [ "$SANDBOX_PORT" != "$REDIS_PORT" ] \
  || die "HONGLI_RUN_WEB_PORT, HONGLI_RUN_SANDBOX_PORT and HONGLI_RUN_REDIS_PORT must differ"
[ -n "$HOST" ] || die "HONGLI_RUN_HOST is empty"
# The address URLs use: a wildcard bind is reached on the loopback; IPv6 literals go in brackets.
# (HONGLI_RUN_HOST is an address as bind() takes it: 127.0.0.1, 0.0.0.0, ::1, ::.)
case $HOST in
  0.0.0.0) URL_HOST=127.0.0.1 BIND_HOST=$HOST NEAR_HOST=127.0.0.1 ;;
  ::) URL_HOST='[::1]' BIND_HOST='[::]' NEAR_HOST=::1 ;;
  *:*) URL_HOST="[$HOST]" BIND_HOST="[$HOST]" NEAR_HOST=$HOST ;;
  *) URL_HOST=$HOST BIND_HOST=$HOST NEAR_HOST=$HOST ;;
esac
if [ -z "$INSTANCE" ]; then
  # The instance holds the sandbox's registration of the demo merchant, whose callbacks go to the web
  # port: one instance directory per web port, so another port never inherits stale callback URLs.
  if [ "$WEB_PORT" = 8000 ]; then INSTANCE=instance; else INSTANCE=instance/port-$WEB_PORT; fi
fi
mkdir -p "$INSTANCE/log" "$INSTANCE/redis"
INSTANCE=$(cd "$INSTANCE" && pwd)
LOG=$INSTANCE/log

# One make run per instance directory. Every process started below inherits the lock, so it is held
# until the last of them is gone.
exec 9>"$INSTANCE/run.lock"
flock -n 9 || die "$INSTANCE is in use by another make run (or by processes it left: fuser -v '$INSTANCE/run.lock'); choose another HONGLI_RUN_INSTANCE or HONGLI_RUN_WEB_PORT"

# 1. Settings. Keys still at their built-in default follow the ports; a bad config.toml or HONGLI_*
# value stops us here, before anything starts.
DERIVED=$(
  "$PYTHON" - "$URL_HOST" "$WEB_PORT" "$SANDBOX_PORT" "$REDIS_PORT" "$INSTANCE" <<'PY'
import sys

from app.settings import Settings, SettingsError, load_settings

host, web_port, sandbox_port, redis_port, instance = sys.argv[1:]
try:
    current = load_settings()
except SettingsError as exc:
    sys.exit(f"hongli: {exc}")
default = Settings()
sandbox = f"http://{host}:{sandbox_port}"
derived = {
    ("web", "public_base_url"): f"http://{host}:{web_port}",
    ("wechat", "api_base_url"): sandbox,
    ("wechat", "pay_base_url"): sandbox,
    ("wechat", "open_base_url"): sandbox,
    ("redis", "url"): f"redis://127.0.0.1:{redis_port}/0",
    ("database", "url"): f"sqlite:///{instance}/hongli.db",
}
effective = {}
for (section, key), value in derived.items():
    if getattr(getattr(current, section), key) == getattr(getattr(default, section), key):
        print(f"HONGLI_{section.upper()}__{key.upper()}={value}")
        effective[section, key] = value
    else:
        effective[section, key] = getattr(getattr(current, section), key)
print(f"PUBLIC_URL={effective['web', 'public_base_url']}")
print(f"REDIS_URL={effective['redis', 'url']}")
print(f"REDIS_OURS={int(current.redis.url == default.redis.url)}")
PY
) || exit 2
ENV_FILE=$INSTANCE/run.env
{
  echo "# The settings scripts/run.sh derived for this instance. To run flask commands against it: . $ENV_FILE"
  while IFS='=' read -r key value; do
    case $key in
      HONGLI_*) export "$key=$value"; printf 'export %s=%q\n' "$key" "$value" ;;
      PUBLIC_URL) PUBLIC_URL=$value ;;
      REDIS_URL) REDIS_URL=$value ;;
      REDIS_OURS) REDIS_OURS=$value ;;
    esac
  done <<<"$DERIVED"
} >"$ENV_FILE"
"$PYTHON" -c "from wsgi import create_app; create_app()" || exit 2

# Nothing may listen on our ports yet: fail now with the variable to change, not halfway through.
port_taken() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
port_taken "$NEAR_HOST" "$WEB_PORT" && die "port $WEB_PORT is in use (another make run?): set HONGLI_RUN_WEB_PORT"
port_taken "$NEAR_HOST" "$SANDBOX_PORT" && die "port $SANDBOX_PORT is in use (another make run?): set HONGLI_RUN_SANDBOX_PORT"
if [ "$REDIS_OURS" = 1 ] && port_taken 127.0.0.1 "$REDIS_PORT"; then
  die "port $REDIS_PORT is in use (another make run?): set HONGLI_RUN_REDIS_PORT, or HONGLI_REDIS__URL to share that Redis on purpose"
fi

# Every service runs in a session of its own (setsid), so a Ctrl-C in the terminal reaches only this
# script, which then stops the services in order. Their output goes to the terminal and to $LOG/NAME.log
# through a tee that ignores INT and TERM: it must outlive its service to log the service's shutdown.
SERVICES=()  # "name:pid", the pid being the session id of everything the service starts
TEES=()
STOPPING=

# session_pids SID...: the pids of live processes in these sessions (children included, e.g. gunicorn's
# workers and RQ's work horse, which runs in a process group of its own).
session_pids() {
  local f line rest pid sid
  for f in /proc/[0-9]*/stat; do
    { read -r line <"$f"; } 2>/dev/null || continue
    pid=${line%% *}
    rest=${line##*) }  # state ppid pgrp session …
    [ "${rest%% *}" = Z ] && continue
    rest=${rest#* }; rest=${rest#* }; rest=${rest#* }
    sid=${rest%% *}
    case " $* " in *" $sid "*) echo "$pid" ;; esac
  done
}

# stop NAME...: TERM the named services' process groups and wait until their sessions are empty.
# After 10 s they get a second TERM (for the RQ worker that is a cold shutdown, which takes its running
# job down), after 15 s whatever is left gets KILL.
stop() {
  local sids=() entry name round left sid
  for name; do
    for entry in "${SERVICES[@]}"; do [ "${entry%%:*}" = "$name" ] && sids+=("${entry#*:}"); done
  done
  [ ${#sids[@]} -gt 0 ] || return 0
  for round in $(seq 0 160); do
    case $round in
      0 | 100) for sid in "${sids[@]}"; do kill -TERM -- "-$sid" 2>/dev/null || true; done ;;
      150) left=$(session_pids "${sids[@]}")
           [ -n "$left" ] && echo "hongli: $* still running after 15 s; killing" $left >&2
           kill -KILL $left 2>/dev/null || true ;;
    esac
    [ -z "$(session_pids "${sids[@]}")" ] && return 0
    sleep 0.1
  done
  echo "hongli: could not stop" $(session_pids "${sids[@]}") >&2
}

stop_all() {
  [ -n "$STOPPING" ] && return 0
  STOPPING=1
  # From here on INT and TERM are ignored, never reset to their default: `make` forwards its own TERM to
  # us, and a TERM to the process group would otherwise kill this shell halfway, orphaning the rest.
  trap '' INT TERM
  echo; echo "hongli: stopping…"
  # Web and worker first, then what they use: the sandbox and Redis.
  stop web worker
  stop sandbox redis
  # The tees end as soon as the last writer is gone.
  for pid in "${TEES[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "hongli: stopped"
}
on_signal() {
  [ -n "$STOPPING" ] && return 0  # already stopping: a repeated signal changes nothing
  stop_all
  exit 0
}
trap on_signal INT TERM
trap stop_all EXIT

# start NAME CMD...: run CMD in a session of its own, output to the terminal and $LOG/NAME.log.
start() {
  local name=$1 out
  shift
  exec {out}> >(trap '' INT TERM; exec tee "$LOG/$name.log")
  TEES+=($!)
  setsid "$@" </dev/null >&"$out" 2>&1 &
  SERVICES+=("$name:$!")
  exec {out}>&-
}
redis_answers() { "$PYTHON" -c "import redis,sys; redis.Redis.from_url(sys.argv[1]).ping()" "$REDIS_URL" 2>/dev/null; }

# 2. Redis: our own on HONGLI_RUN_REDIS_PORT (noeviction, AOF, data in the instance directory); with a
# redis.url of your own, the Redis that answers there, else a local one started on its port.
if [ "$REDIS_OURS" = 1 ] || ! redis_answers; then
  read -r RHOST RPORT < <("$PYTHON" -c "from urllib.parse import urlsplit; import sys; u=urlsplit(sys.argv[1]); print(u.hostname, u.port or 6379)" "$REDIS_URL")
  case "$RHOST" in 127.0.0.1|localhost) ;; *) die "Redis at $REDIS_URL does not answer";; esac
  ensure_redis_server
  # Supervised: a Redis that dies comes back with its data (AOF); the web answers 503 meanwhile and the
  # worker waits for it, so a Redis restart does not stop make run.
  start redis scripts/supervise.sh redis-server --bind 127.0.0.1 --port "$RPORT" --dir "$INSTANCE/redis" \
    --appendonly yes --maxmemory-policy noeviction --daemonize no --loglevel warning
  for _ in $(seq 50); do redis_answers && break; sleep 0.2; done
  redis_answers || die "Redis did not start on port $RPORT (see $LOG/redis.log)"
fi

# 3. Database: create/upgrade the SQLite schema (idempotent).
$FLASK db upgrade >"$LOG/migrate.log" 2>&1 || { cat "$LOG/migrate.log"; exit 1; }

# 4. The processes. Output is interleaved here and also written to $LOG/.
# The sandbox keeps its state across restarts, so the demo merchant's keys stay valid.
SANDBOX_URL="http://$URL_HOST:$SANDBOX_PORT"
start sandbox "$PYTHON" -m wechat.sandbox --host "$HOST" --port "$SANDBOX_PORT" \
  --state-file "$INSTANCE/sandbox-state.json"
for _ in $(seq 100); do
  "$PYTHON" -c "import requests,sys; requests.get(sys.argv[1], timeout=1).raise_for_status()" \
    "$SANDBOX_URL/_sandbox/clock" 2>/dev/null && break
  sleep 0.2
done
"$PYTHON" -c "import requests,sys; requests.get(sys.argv[1], timeout=1).raise_for_status()" \
  "$SANDBOX_URL/_sandbox/clock" 2>/dev/null || die "the sandbox did not start (see $LOG/sandbox.log)"

# 5. A demo merchant registered in the sandbox, its owner's console login and a shop key (once).
$FLASK merchants seed-demo
CREDENTIALS=$INSTANCE/demo-credentials.txt
if [ ! -f "$CREDENTIALS" ]; then
  PASSWORD=$("$PYTHON" -c "import secrets; print(secrets.token_urlsafe(12))")
  echo "$PASSWORD" | $FLASK staff create --email owner@demo-tea.test --name "Demo owner" \
    --merchant demo-tea --role owner --password-stdin >/dev/null
  SHOP_KEY=$($FLASK shop-keys create --merchant demo-tea --name "demo shop" 2>/dev/null | tail -1 || true)
  (umask 077 && printf 'console login: owner@demo-tea.test / %s\nshop API key: %s\n' "$PASSWORD" "$SHOP_KEY" >"$CREDENTIALS")
fi
# Metrics: every web and worker process of this instance writes its counters here; /metrics adds them up
# (prometheus-client's multiprocess mode). Emptied at each start: counters begin at zero with the processes.
export PROMETHEUS_MULTIPROC_DIR=$INSTANCE/metrics
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
start web .venv/bin/gunicorn -c python:app.metrics.gunicorn --bind "$BIND_HOST:$WEB_PORT" --workers 2 --threads 4 \
  --preload 'wsgi:create_app()'
start worker $FLASK worker

# The console's demo login (owner), as the banner prints it.
DEMO_LOGIN=$(sed -n 's/^console login: //p' "$CREDENTIALS")

cat <<MSG

  Hongli is starting:
    web            http://$URL_HOST:$WEB_PORT/          (health: /healthz, readiness: /readyz)
    public URL     $PUBLIC_URL      (WeChat calls back here)
    console        http://$URL_HOST:$WEB_PORT/console/   (demo login: $DEMO_LOGIN)
    API reference  http://$URL_HOST:$WEB_PORT/docs      (OpenAPI: /openapi.json)
    WeChat sandbox $SANDBOX_URL/   (admin API: /_sandbox/, see docs/sandbox.md)
    Redis          $REDIS_URL
    worker         RQ with scheduler and periodic jobs
    demo logins    $CREDENTIALS (console owner, shop API key)
    instance       $INSTANCE (logs: log/; settings for flask commands: . $ENV_FILE)
    walk-through   docs/quickstart.md: in another terminal, INSTANCE=$INSTANCE then paste its blocks
  Ctrl-C stops everything.

MSG
PIDS=()
for entry in "${SERVICES[@]}"; do PIDS+=("${entry#*:}"); done
wait -n "${PIDS[@]}" || true
[ -n "$STOPPING" ] && exit 0
echo "hongli: a process exited (see $LOG/); stopping the rest" >&2
exit 1
