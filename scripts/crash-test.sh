#!/usr/bin/env bash
# Crash test (not run in CI: it takes minutes). Runs Coffer's crash suite with many
# kills: a single node and a 3-node cluster under write load are SIGKILLed at random
# moments, restarted and unsealed; after every round every acknowledged write must read
# back with its acknowledged value (tests/tests/cluster.rs, crash_* tests; CI runs the
# same tests with 3 kills).
#
#   scripts/crash-test.sh            # 20 kills each
#   ROUNDS=50 scripts/crash-test.sh  # more
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-20}"
echo "crash test: ${ROUNDS} kills on a single node and on a 3-node cluster"
COFFER_CRASH_ROUNDS="${ROUNDS}" cargo test -p coffer-tests --test integration \
    cluster::crash_ -- --nocapture --test-threads=1
