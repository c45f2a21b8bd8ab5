#!/bin/sh
# --workers 2 against one process, side by side in one run, per server CPU-second (wsload --pid
# counts the primary and its workers together). Usage: sh bench/workers.sh [seconds]
set -eu
D=${1:-10}
WSLOAD=${WSLOAD:-/work/shared/tools/wsload/wsload}
CLI=dist/src/cli/main.js
DIR=$(mktemp -d)
printf 'function main(id, msg) _send(id, msg) end\n' > "$DIR/echo.lua"
printf 'function main(id, msg) _sendAll(msg) end\n' > "$DIR/bcast.lua"

run() { # name script workers wsload-args...
  name=$1; script=$2; workers=$3; shift 3
  node "$CLI" serve "$DIR/$script" --workers "$workers" --port 0 --log-level warn > "$DIR/out" 2>&1 &
  pid=$!
  while ! grep -q 'listening on ws://127.0.0.1:[0-9]*/' "$DIR/out"; do sleep 0.2; done
  url=$(grep -o 'ws://127.0.0.1:[0-9]*/' "$DIR/out" | head -1)
  echo "== $name (--workers $workers)"
  "$WSLOAD" "$@" -d "$D" -w 2 --pid "$pid" "$url" | tail -1
  kill -TERM "$pid"; wait "$pid" || true
}

[ "${ONLY:-}" = bcast ] || run echo-1 echo.lua 1 echo -c 100 -p 16 -s 64
[ "${ONLY:-}" = bcast ] || run echo-2 echo.lua 2 echo -c 100 -p 16 -s 64
run bcast-1 bcast.lua 1 broadcast -c 1000 -p 16 -s 64
run bcast-2 bcast.lua 2 broadcast -c 1000 -p 16 -s 64
rm -rf "$DIR"
