# Source this to get the project's tools and an offline Pulumi:  . scripts/env.sh
# Every script, test and `pulumi` itself runs with these settings. `pulumi` is bin/pulumi, which
# runs the CLI built into .tools/bin and chooses per run the state backend (PULUMI_BACKEND_URL, else
# `pulumi login`'s choice, else the file backend in .pulumi-state/) and the stack's own passphrase
# (PULUMI_CONFIG_PASSPHRASE or _FILE, else stacks/<stack>.passphrase; only `local`'s is public).
QBI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
export QBI_ROOT
case ":$PATH:" in
  *":$QBI_ROOT/bin:$QBI_ROOT/.tools/bin:"*) ;;
  *) export PATH="$QBI_ROOT/bin:$QBI_ROOT/.tools/bin:$QBI_ROOT/node_modules/.bin:$PATH" ;;
esac
export PULUMI_HOME="${PULUMI_HOME:-$QBI_ROOT/.tools/pulumi-home}"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK=
# refresh and destroy run the program too: the engine then configures the providers with the current
# stack config (the Admin connection comes from there), not with the copy stored at the last up.
export PULUMI_RUN_PROGRAM="${PULUMI_RUN_PROGRAM:-true}"
export QUBES_SIM_SOCKET="${QUBES_SIM_SOCKET:-$QBI_ROOT/.qubes-sim/qubesd.sock}"
export QUBES_SIM_STATE="${QUBES_SIM_STATE:-$QBI_ROOT/.qubes-sim/state}"
