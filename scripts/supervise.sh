#!/usr/bin/env bash
# supervise.sh CMD...: run CMD, and run it again whenever it dies, until this script gets TERM or INT.
# `make run` starts its Redis this way, so a Redis that crashes (or is killed) comes back on its own while
# the web answers 503 and the worker waits for it. A command that keeps dying within 2 s of its start
# (5 times running) is given up on: this script exits 1, and `make run` stops (its port is taken, …).
set -uo pipefail
child=
stopping=
on_stop() {
  stopping=1
  [ -n "$child" ] && kill -TERM "$child" 2>/dev/null
}
trap on_stop TERM INT
quick=0
while [ -z "$stopping" ]; do
  started=$SECONDS
  "$@" &
  child=$!
  wait "$child"; status=$?
  # A trapped signal interrupts `wait`: wait again for the child's own end.
  while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done
  child=
  [ -n "$stopping" ] && break
  if ((SECONDS - started < 2)); then quick=$((quick + 1)); else quick=0; fi
  if ((quick >= 5)); then
    echo "hongli: $1 keeps exiting right after its start (status $status); giving up" >&2
    exit 1
  fi
  echo "hongli: $1 exited (status $status); starting it again" >&2
  sleep 1
done
exit 0
