#!/bin/sh
# Stand-in of qubes-builder-github's lib/functions.sh (qubes-sim): builders.list and a per-builder
# lock, as the real handlers use them.
config_file="$HOME/.config/qubes-builder-github/builders.list"
mkdir -p "$HOME/builder-github-logs"
log_basename="$HOME/builder-github-logs/$(date +%s)-$$"

# Runs "$1 <release> <builder dir>" for each builders.list line, in the background, each under
# its builder's lock.
execute_in_each_builder() {
  while IFS='=' read -r rel bdir; do
    [ -d "$bdir" ] || continue
    (
      exec 9> "$bdir/builder.lock"
      flock -x 9
      exec >>"${log_basename}-${rel}.log" 2>&1 </dev/null
      $1 "$rel" "$bdir"
    ) &
  done < "$config_file"
}
