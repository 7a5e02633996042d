#!/usr/bin/env bash
# Starts or stops the qubes-sim daemon that the `local` stack targets (socket and state from
# scripts/env.sh). `start` is a no-op when it already answers. The daemon creates the stand-in
# GitHub (<state>/github/build-logs.git, bound at /srv/qubes-sim-github in VMs with network) and the
# modelled network (its addresses: bin/qubes-sim network). It runs as root (network namespaces).
# `start` then adds the stand-in builder repositories the local stack checks out (sim/standin/).
set -euo pipefail
cd "$(dirname "$0")/.."
sock=${QUBES_SIM_SOCKET:?source scripts/env.sh}
state=${QUBES_SIM_STATE:?}
pidfile=$(dirname "$sock")/qubes-sim.pid
answers() { [ -S "$sock" ] && socat -u OPEN:/dev/null "UNIX-CONNECT:$sock" 2>/dev/null; }
case "${1:-start}" in
  start)
    standins() { bin/qubes-sim standin-builders --state "$state" >/dev/null || { echo "cannot create the stand-in builder repositories" >&2; exit 1; }; }
    if answers; then standins; exit 0; fi
    mkdir -p "$(dirname "$sock")" "$state"
    nohup bin/qubes-sim serve --socket "$sock" --state "$state" >"$(dirname "$sock")/qubes-sim.log" 2>&1 &
    echo $! > "$pidfile"
    for _ in $(seq 1 100); do answers && { standins; echo "qubes-sim running on $sock (log: $(dirname "$sock")/qubes-sim.log)"; exit 0; }; sleep 0.1; done
    echo "qubes-sim did not start; see $(dirname "$sock")/qubes-sim.log" >&2; exit 1 ;;
  stop)
    # The daemon halts the VMs' boot sandboxes (rc.local daemons) and its qrexec sockets on SIGTERM.
    if [ -f "$pidfile" ]; then
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile" ;;
  *) echo "usage: sim.sh start|stop" >&2; exit 2 ;;
esac
