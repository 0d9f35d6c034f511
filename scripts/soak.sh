#!/usr/bin/env bash
# The long form of the soak test (tests/soak.rs): 64 app threads of mixed metadata and data
# operations through a real mount for 10 minutes (or SECS), with a policy reload and a grant
# change every second; checks every answer and every byte, and that the daemon's fds and RSS
# stay flat. CI runs the same test for 20 s inside `cargo test`.
#   scripts/soak.sh [SECS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
export FUSEGATE_SOAK_SECS=${1:-600}
[ -n "${2:-}" ] && export FUSEGATE_SOAK_SEED=$2
export CI=${CI:-true}
exec cargo test --release --test soak -- --nocapture
