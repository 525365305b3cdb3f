#!/usr/bin/env bash
# A throw-away S3 server for the remote-cache tests and bench: moto's `moto_server`
# (in-memory, signatures not checked) on 127.0.0.1 at a free port.
#
#   Needs:  moto_server on PATH, or in $MOTO_VENV/bin (pip install 'moto[s3]' flask flask-cors;
#           .ci/run installs it when missing).
#   Usage:  s3-up.sh [up] [--bucket NAME]...   start; prints KEY=VALUE lines: MOTO_RUN_DIR,
#                                              MOTO_PID, MOTO_LOG and the AWS_* variables
#                                              the object_store crate (and the AWS CLI) read
#           s3-up.sh down RUN_DIR              stop the server started with that run dir
#   Env:    MOTO_RUN_DIR  where the pid file and request log go (default: a fresh temp dir)
#           MOTO_OWNER_PID  stop the server when this process exits (tests pass their pid,
#                           so a killed test run leaves no server behind)
#   Between tests: curl -X POST http://127.0.0.1:PORT/moto-api/reset drops every bucket.
set -euo pipefail

stop() { # RUN_DIR
  local pidf=$1/moto.pid
  if [ -s "$pidf" ]; then kill "$(cat "$pidf")" 2>/dev/null || true; fi
  rm -f "$pidf"
}

mode=up
if [ "${1:-}" = up ] || [ "${1:-}" = down ]; then mode=$1; shift; fi
if [ "$mode" = down ]; then
  [ -n "${1:-}" ] || { echo "usage: s3-up.sh down RUN_DIR" >&2; exit 2; }
  stop "$1"; echo "moto: stopped"; exit 0
fi

buckets=()
while [ $# -gt 0 ]; do
  case $1 in
    --bucket) buckets+=("$2"); shift 2 ;;
    *) echo "s3-up.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

server=$(command -v moto_server || true)
# $MOTO_VENV, else the venv .ci/run creates.
venv=${MOTO_VENV:-$HOME/.cache/slayer/moto-venv}
if [ -z "$server" ] && [ -x "$venv/bin/moto_server" ]; then
  server=$venv/bin/moto_server
fi
if [ -z "$server" ]; then
  echo "s3-up.sh: moto_server not found (on PATH or in \$MOTO_VENV/bin); install it with:" >&2
  echo "  pip install 'moto[s3]' flask flask-cors" >&2
  exit 3
fi
python=$(dirname "$server")/python3
[ -x "$python" ] || python=python3

run=${MOTO_RUN_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/slayer-moto.XXXXXX")}
mkdir -p "$run"
stop "$run"
# A free port: bind port 0 and read what the kernel chose (a race with another process
# taking it before moto does is retried below).
for attempt in 1 2 3; do
  port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  setsid "$server" -H 127.0.0.1 -p "$port" </dev/null >"$run/moto.log" 2>&1 &
  pid=$!
  echo "$pid" >"$run/moto.pid"
  up=
  for _ in $(seq 150); do
    if curl -fs -o /dev/null "http://127.0.0.1:$port/moto-api/"; then up=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$up" ] && break
  stop "$run"
  if [ "$attempt" = 3 ]; then
    echo "s3-up.sh: moto_server did not start; its log ($run/moto.log):" >&2
    tail -20 "$run/moto.log" >&2
    exit 1
  fi
done

if [ -n "${MOTO_OWNER_PID:-}" ]; then
  ( while kill -0 "$MOTO_OWNER_PID" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
    kill "$pid" 2>/dev/null ) </dev/null >/dev/null 2>&1 &
fi

for b in "${buckets[@]}"; do
  curl -fs -o /dev/null -X PUT "http://127.0.0.1:$port/$b" \
    || { echo "s3-up.sh: cannot create bucket $b" >&2; stop "$run"; exit 1; }
done

cat <<VARS
MOTO_RUN_DIR=$run
MOTO_PID=$pid
MOTO_LOG=$run/moto.log
AWS_ENDPOINT_URL=http://127.0.0.1:$port
AWS_ALLOW_HTTP=true
AWS_ACCESS_KEY_ID=test
AWS_SECRET_ACCESS_KEY=test
AWS_REGION=us-east-1
AWS_DEFAULT_REGION=us-east-1
VARS
