# Source this to get the project's tools and an offline Pulumi:  . scripts/env.sh
# Every script, test and `pulumi` itself runs with these settings.
QBI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
export QBI_ROOT
export PATH="$QBI_ROOT/.tools/bin:$QBI_ROOT/node_modules/.bin:$PATH"
export PULUMI_HOME="$QBI_ROOT/.tools/pulumi-home"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK=
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$QBI_ROOT/.pulumi-state}"
# refresh and destroy run the program too: the engine then configures the providers with the current
# stack config (the Admin connection comes from there), not with the copy stored at the last up.
export PULUMI_RUN_PROGRAM="${PULUMI_RUN_PROGRAM:-true}"
# The `local` stack's secrets use this documented passphrase; a real site sets its own
# PULUMI_CONFIG_PASSPHRASE (or _FILE) before sourcing this file.
if [ -z "${PULUMI_CONFIG_PASSPHRASE+set}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  export PULUMI_CONFIG_PASSPHRASE_FILE="$QBI_ROOT/stacks/local.passphrase"
fi
export QUBES_SIM_SOCKET="${QUBES_SIM_SOCKET:-$QBI_ROOT/.qubes-sim/qubesd.sock}"
export QUBES_SIM_STATE="${QUBES_SIM_STATE:-$QBI_ROOT/.qubes-sim/state}"
