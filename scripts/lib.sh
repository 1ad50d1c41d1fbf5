# Shared shell helpers for scripts/*.sh (sourced, not executed).

die() { echo "hongli: $*" >&2; exit 1; }

# A TCP port nobody listens on right now.
free_port() {
  "$PYTHON" - <<'PY'
import socket
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
PY
}

# Make sure redis-server exists: install Debian's package when we are root, else say what to do.
ensure_redis_server() {
  command -v redis-server >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ "${HONGLI_NO_APT:-}" != 1 ]; then
    echo "hongli: redis-server is missing; installing Debian's redis-server package" >&2
    # Never let the package start a system-wide Redis: we start our own on our own port.
    policy=/usr/sbin/policy-rc.d
    [ -e "$policy" ] || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; trap_policy=1; }
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
    [ "${trap_policy:-}" = 1 ] && rm -f "$policy"
    command -v redis-server >/dev/null 2>&1 || die "installing redis-server failed"
  else
    die "redis-server is not installed. Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) and re-run."
  fi
}

# Make sure a command-line tool exists (ensure_tool COMMAND DEBIAN_PACKAGE): Debian's package when root.
# The quickstart walk-through (docs/quickstart.md, run by tests/test_quickstart.py) needs jq and curl.
ensure_tool() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ "${HONGLI_NO_APT:-}" != 1 ]; then
    echo "hongli: $1 is missing; installing Debian's $2 package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
    command -v "$1" >/dev/null 2>&1 || die "installing $2 failed"
  else
    die "$1 is not installed. Install it (Debian/Ubuntu: sudo apt-get install $2) and re-run."
  fi
}

# Make sure a file a package provides exists (ensure_file PATH DEBIAN_PACKAGE): e.g. a CJK font, so the
# console's browser tests draw Chinese (their screenshots are in docs/console.md) rather than boxes.
ensure_file() {
  [ -e "$1" ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ "${HONGLI_NO_APT:-}" != 1 ]; then
    echo "hongli: $1 is missing; installing Debian's $2 package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
    [ -e "$1" ] || die "installing $2 failed"
  else
    echo "hongli: $1 is missing (Debian/Ubuntu: sudo apt-get install $2); Chinese text in screenshots will not render" >&2
  fi
}

# Make sure PgBouncer exists (the scale-out tests put two web instances and two workers behind it):
# Debian's pgbouncer package when we are root, never started as a system service.
pgbouncer_bin() { command -v pgbouncer 2>/dev/null || { [ -x /usr/sbin/pgbouncer ] && echo /usr/sbin/pgbouncer; }; }
ensure_pgbouncer() {
  [ -n "$(pgbouncer_bin)" ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ "${HONGLI_NO_APT:-}" != 1 ]; then
    echo "hongli: pgbouncer is missing; installing Debian's pgbouncer package" >&2
    policy=/usr/sbin/policy-rc.d
    [ -e "$policy" ] || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; trap_policy=1; }
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null
    [ "${trap_policy:-}" = 1 ] && rm -f "$policy"
    [ -n "$(pgbouncer_bin)" ] || die "installing pgbouncer failed"
  else
    die "pgbouncer is not installed. Install it (Debian/Ubuntu: sudo apt-get install pgbouncer) and re-run."
  fi
}

# Directory holding the PostgreSQL server binaries (initdb, pg_ctl, postgres).
pg_bindir() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then pg_config --bindir; return; fi
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && { echo "$d"; return; }; done
  command -v initdb >/dev/null 2>&1 && { dirname "$(readlink -f "$(command -v initdb)")"; return; }
  die "PostgreSQL server binaries (initdb) not found; install postgresql (Debian: apt-get install postgresql)"
}

# PostgreSQL refuses to run as root: run its commands as 'nobody' then.
as_pg_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}
