#!/usr/bin/env bash
# Server-level benchmarks of Coffer (issue 7), all on this machine over 127.0.0.1:
#   - builds the release binaries once (coffer, coffer-bench);
#   - makes an ECDSA certificate, starts a release single-node Coffer with Raft
#     storage on disk (fsync'd WAL) in a temp dir, inits, unseals and mounts what the
#     scenarios use (`coffer-bench setup`);
#   - starts the bare actix-web + rustls baseline server and runs it at the start and
#     the end of the run, so every figure is a ratio to a baseline of the same run;
#   - runs every scenario (with the server's CPU per request, from /proc), the audit
#     on/off pairs, the bulk load with resident-set and
#     restart measurements, and writes the markdown report to stdout and to a file.
#
# Environment (all optional):
#   DURATION=10        measured seconds per scenario (plus WARMUP=1 s unmeasured)
#   AUDIT_ROUNDS=3     interleaved kv-read-one audit off/on pairs (the report averages them)
#   AUDIT_FILE=file    the audit device's file_path (default $WORK/audit.log; `discard`
#                      builds and hashes every line but writes none, /dev/null writes
#                      them to nothing: together they split the audit cost)
#   CONNECTIONS=64     connections for the main runs (1-connection runs are extra)
#   KEYS=100000        key space of kv-read-many / kv-mixed
#   LOAD_COUNT=1000000 secrets written for the memory/restart measurement (0 skips it)
#   PORT=18200 BASELINE_PORT=18300   listen ports on 127.0.0.1
#   WORK=dir           where data, logs, results go (default: a new temp dir, kept)
#   OUT=file           the markdown report (default: $WORK/report.md)
#   CLUSTER=1          also run kv-write on a 3-node cluster (retry_join), 0 skips it
#   CLUSTER_PORT=18500 first port of the cluster (node i: API +2i, cluster +2i+1)
#   SKIP_BUILD=1       reuse the existing release binaries
#   ONLY="kv-read-one health"  run only these scenarios (and audit, memory; baselines
#                      always run)
#   BASELINE_EACH=1    run the baseline before every scenario (0: only at start and
#                      end); each ratio uses the baseline runs adjacent to it, since
#                      other processes on the machine make the ceiling drift
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
CONNECTIONS=${CONNECTIONS:-64}
KEYS=${KEYS:-100000}
LOAD_COUNT=${LOAD_COUNT:-1000000}
PORT=${PORT:-18200}
BASELINE_PORT=${BASELINE_PORT:-18300}
ONLY=${ONLY:-}
AUDIT_ROUNDS=${AUDIT_ROUNDS:-3}
BASELINE_EACH=${BASELINE_EACH:-1}
CLUSTER=${CLUSTER:-1}
CLUSTER_PORT=${CLUSTER_PORT:-18500}
WORK=${WORK:-$(mktemp -d /tmp/coffer-bench.XXXXXX)}
OUT=${OUT:-$WORK/report.md}
AUDIT_FILE=${AUDIT_FILE:-$WORK/audit.log}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
COFFER=$TARGET_DIR/release/coffer
BENCH=$TARGET_DIR/release/coffer-bench
ADDR=https://127.0.0.1:$PORT
BASE_ADDR=https://127.0.0.1:$BASELINE_PORT
RESULTS=$WORK/results.jsonl

mkdir -p "$WORK"
: >"$RESULTS"
log() { echo "== $*" >&2; }

if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building release binaries (once)"
    (cd "$ROOT" && cargo build --release -p coffer-bench -p coffer)
fi
for b in "$COFFER" "$BENCH"; do
    [[ -x $b ]] || { echo "missing $b (build it or unset SKIP_BUILD)" >&2; exit 1; }
done

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$PORT" $((PORT + 1)) "$BASELINE_PORT"; do
    if port_busy "$p"; then echo "port $p is in use; set PORT / BASELINE_PORT" >&2; exit 1; fi
done

SERVER_PID=
BASELINE_PID=
CLUSTER_PIDS=()
cleanup() {
    # Only the processes this script started, by pid.
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
    [[ -n $BASELINE_PID ]] && kill "$BASELINE_PID" 2>/dev/null || true
    for p in "${CLUSTER_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

log "work dir: $WORK"
"$BENCH" gen-cert "$WORK/tls" >/dev/null
CA=$WORK/tls/tls.crt
cat >"$WORK/coffer.hcl" <<EOF
storage "raft" {
  path    = "$WORK/data"
  node_id = "bench1"
}
listener "tcp" {
  address       = "127.0.0.1:$PORT"
  tls_cert_file = "$WORK/tls/tls.crt"
  tls_key_file  = "$WORK/tls/tls.key"
}
api_addr      = "$ADDR"
cluster_addr  = "https://127.0.0.1:$((PORT + 1))"
disable_mlock = true
EOF

wait_port() {
    for _ in $(seq 1 300); do port_busy "$1" && return 0; sleep 0.1; done
    echo "nothing listens on port $1" >&2; return 1
}

log "starting coffer (release, raft on disk) on $ADDR"
"$COFFER" server -config="$WORK/coffer.hcl" >"$WORK/coffer.log" 2>&1 &
SERVER_PID=$!
wait_port "$PORT"
TOKEN=$("$BENCH" setup --addr "$ADDR" --ca "$CA" --out "$WORK")
UNSEAL_KEY=$(cat "$WORK/unseal_key")
sleep 2
log "idle resident set"
"$BENCH" rss --pid "$SERVER_PID" --label idle --count 0 --json-out "$RESULTS" >/dev/null

log "starting the baseline server on $BASE_ADDR"
"$BENCH" baseline-server --listen "127.0.0.1:$BASELINE_PORT" \
    --cert "$WORK/tls/tls.crt" --key "$WORK/tls/tls.key" >"$WORK/baseline.log" 2>&1 &
BASELINE_PID=$!
wait_port "$BASELINE_PORT"

common=(--ca "$CA" --duration "$DURATION" --warmup "$WARMUP" --json-out "$RESULTS")
baseline() {
    log "baseline, $1 connection(s)"
    "$BENCH" baseline --addr "$BASE_ADDR" "${common[@]}" --connections "$1"
}
wanted() { [[ -z $ONLY || " $ONLY " == *" $1 "* ]]; }
# run SCENARIO CONNECTIONS [more flags]
run() {
    local scenario=$1 conns=$2; shift 2
    wanted "$scenario" || return 0
    [[ $BASELINE_EACH == 1 ]] && baseline "$conns"
    log "$scenario, $conns connection(s) $*"
    "$BENCH" "$scenario" --addr "$ADDR" --token "$TOKEN" "${common[@]}" --connections "$conns" \
        --server-pid "$SERVER_PID" "$@"
}

baseline "$CONNECTIONS"
baseline 1
run health "$CONNECTIONS"
run kv-read-one "$CONNECTIONS"
run kv-read-one 1
run token-lookup-self "$CONNECTIONS"
run kv-write "$CONNECTIONS"
run kv-write 1
run kv-read-many "$CONNECTIONS" --keys "$KEYS" --prepare
run kv-mixed "$CONNECTIONS" --keys "$KEYS"
run transit-encrypt "$CONNECTIONS"
run transit-decrypt "$CONNECTIONS"
run approle-login "$CONNECTIONS"

if wanted audit; then
    # Interleaved rounds on one server (the machine's load drifts; one pair moves by +-10%):
    # kv-read-one without, then with a file audit device; the report averages the pairs.
    baseline "$CONNECTIONS"
    for round in $(seq 1 "$AUDIT_ROUNDS"); do
        log "audit cost, round $round of $AUDIT_ROUNDS: kv-read-one without, then with a file audit device"
        "$BENCH" kv-read-one --addr "$ADDR" --token "$TOKEN" "${common[@]}" \
            --connections "$CONNECTIONS" --server-pid "$SERVER_PID" --label "audit off"
        "$BENCH" call --addr "$ADDR" --ca "$CA" --token "$TOKEN" --method PUT \
            --body "{\"type\":\"file\",\"options\":{\"file_path\":\"$AUDIT_FILE\"}}" \
            sys/audit/file >/dev/null
        "$BENCH" kv-read-one --addr "$ADDR" --token "$TOKEN" "${common[@]}" \
            --connections "$CONNECTIONS" --server-pid "$SERVER_PID" --label "audit on"
        "$BENCH" call --addr "$ADDR" --ca "$CA" --token "$TOKEN" --method DELETE \
            sys/audit/file >/dev/null
        if [[ -f $AUDIT_FILE ]]; then
            log "audit log: $(du -h "$AUDIT_FILE" | cut -f1)"
            # Only a log this script owns (in its work dir) is removed between rounds.
            [[ $AUDIT_FILE == "$WORK"/* ]] && rm -f "$AUDIT_FILE"
        fi
    done
fi

# Three nodes on this machine, joined through retry_join; kv-write through the leader.
cluster_write() {
    local n o p api cport joins dir
    for n in 0 1 2; do
        api=$((CLUSTER_PORT + 2 * n)); cport=$((api + 1))
        for p in "$api" "$cport"; do
            if port_busy "$p"; then echo "port $p is in use; set CLUSTER_PORT" >&2; return 1; fi
        done
    done
    for n in 0 1 2; do
        api=$((CLUSTER_PORT + 2 * n)); cport=$((api + 1)); dir=$WORK/cluster/node$n
        mkdir -p "$dir"
        joins=
        for o in 0 1 2; do
            [[ $o == "$n" ]] && continue
            joins+="  retry_join {
    leader_api_addr     = \"https://127.0.0.1:$((CLUSTER_PORT + 2 * o))\"
    leader_ca_cert_file = \"$CA\"
  }
"
        done
        cat >"$dir/coffer.hcl" <<EOF
storage "raft" {
  path    = "$dir/data"
  node_id = "node$n"
$joins}
listener "tcp" {
  address         = "127.0.0.1:$api"
  cluster_address = "127.0.0.1:$cport"
  tls_cert_file   = "$WORK/tls/tls.crt"
  tls_key_file    = "$WORK/tls/tls.key"
}
api_addr      = "https://127.0.0.1:$api"
cluster_addr  = "https://127.0.0.1:$cport"
disable_mlock = true
EOF
        "$COFFER" server -config="$dir/coffer.hcl" >"$dir/coffer.log" 2>&1 &
        CLUSTER_PIDS+=($!)
    done
    for n in 0 1 2; do wait_port $((CLUSTER_PORT + 2 * n)); done
    local leader=https://127.0.0.1:$CLUSTER_PORT ctoken ckey status=
    ctoken=$("$BENCH" setup --addr "$leader" --ca "$CA" --out "$WORK/cluster" 2>"$WORK/cluster/setup.log")
    ckey=$(cat "$WORK/cluster/unseal_key")
    for n in 1 2; do
        api=https://127.0.0.1:$((CLUSTER_PORT + 2 * n))
        for _ in $(seq 1 300); do
            status=$("$BENCH" call --addr "$api" --ca "$CA" sys/seal-status 2>/dev/null || true)
            [[ $status == *'"initialized":true'* ]] && break
            sleep 0.1
        done
        "$BENCH" call --addr "$api" --ca "$CA" --method PUT --body "{\"key\":\"$ckey\"}" \
            sys/unseal >/dev/null
    done
    for _ in $(seq 1 300); do
        status=$("$BENCH" call --addr "$leader" --ca "$CA" --token "$ctoken" \
            sys/storage/raft/configuration 2>/dev/null || true)
        [[ $(grep -o '"voter":true' <<<"$status" | wc -l) -ge 3 ]] && break
        sleep 0.1
    done
    log "cluster: $(grep -o '"voter":true' <<<"$status" | wc -l) voters"
    [[ $BASELINE_EACH == 1 ]] && baseline "$CONNECTIONS"
    log "kv-write on the 3-node cluster (through the leader), $CONNECTIONS connections"
    "$BENCH" kv-write --addr "$leader" --token "$ctoken" "${common[@]}" \
        --connections "$CONNECTIONS" --label 3-node
    for p in "${CLUSTER_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${CLUSTER_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    CLUSTER_PIDS=()
}

if [[ $CLUSTER == 1 ]] && wanted cluster; then
    # The single node stays up but idle meanwhile (its memory is measured later).
    cluster_write
fi

baseline "$CONNECTIONS"
baseline 1
kill "$BASELINE_PID" 2>/dev/null || true
wait "$BASELINE_PID" 2>/dev/null || true
BASELINE_PID=

if [[ $LOAD_COUNT -gt 0 ]] && wanted memory; then
    log "bulk load: $LOAD_COUNT KV v2 secrets of 100 bytes"
    "$BENCH" load-kv --addr "$ADDR" --ca "$CA" --token "$TOKEN" --count "$LOAD_COUNT" \
        --value-size 100 --connections "$CONNECTIONS" --json-out "$RESULTS"
    sleep 2
    "$BENCH" rss --pid "$SERVER_PID" --label "after loading" --count "$LOAD_COUNT" \
        --json-out "$RESULTS" >/dev/null
    log "restart with the data (SIGTERM, then start and time to the first read)"
    kill -TERM "$SERVER_PID"
    for _ in $(seq 1 600); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    SERVER_PID=
    "$BENCH" start-time --addr "$ADDR" --ca "$CA" --coffer "$COFFER" \
        --config "$WORK/coffer.hcl" --log "$WORK/coffer.log" --pid-file "$WORK/coffer.pid" \
        --unseal-key "$UNSEAL_KEY" --token "$TOKEN" --probe secret/data/load/0 \
        --count "$LOAD_COUNT" --json-out "$RESULTS" >/dev/null
    SERVER_PID=$(cat "$WORK/coffer.pid")
    sleep 2
    "$BENCH" rss --pid "$SERVER_PID" --label "after restart" --count "$LOAD_COUNT" \
        --json-out "$RESULTS" >/dev/null
fi

{
    echo "Coffer benchmark run $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores," \
        "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)," \
        "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo);" \
        "${DURATION} s per scenario after ${WARMUP} s warm-up."
    echo
    "$BENCH" report "$RESULTS"
} | tee "$OUT"
log "report: $OUT (raw results: $RESULTS, logs in $WORK)"
