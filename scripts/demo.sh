#!/usr/bin/env bash
# Runs the main job on an embedded default: a local Temporal dev server with
# its Web UI, two local Dovecot servers with sample mailboxes, a worker, and a
# batch that moves the mailboxes from one to the other.
#   bash scripts/demo.sh        start everything, watch the batch
#   bash scripts/demo.sh stop   stop what the demo started
set -euo pipefail
cd "$(dirname "$0")/.."
state=.mailmove
mkdir -p "$state"
address=127.0.0.1:7233

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop() {
  for p in worker temporal; do
    if running "$state/$p.pid"; then
      kill "$(cat "$state/$p.pid")" 2>/dev/null || true
      for _ in $(seq 1 60); do running "$state/$p.pid" || break; sleep 0.5; done
    fi
    rm -f "$state/$p.pid"
  done
  [ -d "$state/testbed" ] && bin/testbed down --dir "$state/testbed" || true
  echo "demo stopped"
}

if [ "${1:-}" = stop ]; then stop; exit 0; fi

if ! running "$state/temporal.pid"; then
  echo "Starting the Temporal dev server (data in $state/temporal.db, log $state/temporal.log)"
  nohup bin/mailmove dev-server --db-filename "$state/temporal.db" >"$state/temporal.log" 2>&1 &
  echo $! >"$state/temporal.pid"
fi
for _ in $(seq 1 120); do
  bin/temporal operator cluster health --address "$address" >/dev/null 2>&1 && break
  sleep 0.5
done
bin/temporal operator cluster health --address "$address" >/dev/null || { echo "Temporal did not start; see $state/temporal.log"; exit 1; }

echo "Starting two Dovecot servers with sample mailboxes"
bin/testbed up --dir "$state/testbed" --source-port 11143 --target-port 12143 --mailboxes 3 --messages 300

bin/mailmove key init # the worker only reads the key the CLI seals with
if ! running "$state/worker.pid"; then
  echo "Starting a worker (log $state/worker.log)"
  nohup bin/mailmove-worker --address "$address" >"$state/worker.log" 2>&1 &
  echo $! >"$state/worker.pid"
fi

batch="demo-$(date +%Y%m%d-%H%M%S)"
bin/mailmove batch start --address "$address" --name "$batch" --csv "$state/testbed/batch.csv" \
  --source 127.0.0.1:11143 --target 127.0.0.1:12143 --source-security none --target-security none
echo
echo "Web UI: http://127.0.0.1:8233/namespaces/default/workflows?query=MailmoveBatch%3D%22$batch%22"
echo
bin/mailmove batch status "$batch" --address "$address" --watch --interval 1s
echo
echo "Done. Look around the Web UI, then stop everything with: make demo-stop"
