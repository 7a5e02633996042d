#!/usr/bin/env bash
# Scenario 1 on the running local site (after `make up`): the builder is build-fedora's verified
# checkout of the stand-in qubes-builder (sim/standin/); makes sure sys-net's webhook receiver runs (its rc.local
# block; added here, and the sim restarted, when the site has not placed it yet), sends a signed
# push webhook for a component (default core-admin) and waits for the build's result.
# Watch it from another terminal with:  bin/qubes-sim journal --follow
# Usage: scripts/demo-build.sh [component]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
comp=${1:-core-admin}
state=$QUBES_SIM_STATE
[ -f "$state/vms/sys-net/rw/usrlocal/lib/qubes-build-infra/webhooks.js" ] || { echo "the local site is not deployed: run make up" >&2; exit 1; }
# The upload host of the local stack (Pulumi.local.yaml: uploads.qubes-sim.test:2222, the sim's
# stand-in internet; its address on this host is in `bin/qubes-sim network`): a stand-in that
# answers OK, listening on every address so that it follows the sim's network slot.
if ! (exec 3<>/dev/tcp/127.0.0.1/2222) 2>/dev/null; then
  nohup node -e '
    require("net").createServer((c) => { let n = 0; c.on("data", (d) => { n += d.length; }); c.on("end", () => c.end(`OK ${n} bytes\n`)); c.on("error", () => {}); })
      .listen(2222, "0.0.0.0");' >/dev/null 2>&1 &
  echo "stand-in upload host on port 2222 of the stand-in internet (pid $!)"
fi
# The receiver is reached through sys-net's uplink (its webhook front, in `bin/qubes-sim network`).
front() { node -e 'const n=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));if(!n.webhookFront)process.exit(1);const u=new URL(n.webhookFront.url);console.log(u.hostname+"/"+(u.port||80))' "$state/network.json" 2>/dev/null; }
# The site places the receiver's start in sys-net's rc.local; a sys-net that booted before the
# site was deployed has not run it yet: restart qubes-sim so that sys-net boots again.
if ! f=$(front) || ! (exec 3<>"/dev/tcp/$f") 2>/dev/null; then
  grep -q "webhooks.js" "$state/vms/sys-net/rw/config/rc.local" 2>/dev/null || { echo "sys-net has no webhook receiver block in rc.local: run make up" >&2; exit 1; }
  echo "restarting qubes-sim so that sys-net boots with the webhook receiver"
  bash scripts/sim.sh stop; sleep 1; bash scripts/sim.sh start
fi
for _ in $(seq 1 100); do f=$(front) && (exec 3<>"/dev/tcp/$f") 2>/dev/null && break; sleep 0.2; done
res=$state/vms/build-fedora/rw/home/user/builder-r4.2/artifacts/$comp/result
rm -f "$res"
bin/qubes-sim trigger-build "$comp"
for _ in $(seq 1 600); do [ -f "$res" ] && break; sleep 0.2; done
[ -f "$res" ] || { echo "no result after 120 s; see bin/qubes-sim journal" >&2; exit 1; }
echo "build of $comp: $(cat "$res")"
bin/qubes-sim journal --tail 8
