#!/usr/bin/env bash
# Scale-out test: three hosts behind a real HAProxy, rolling deploys across
# them under load, zero failed requests.
#
# Each host is a network namespace on a bridge this script creates (its own
# private /24, no default route: traffic goes only to loopback and to these
# namespaces), running the release `same_port --port 8000 --healthz /healthz
# --drain-delay D`. HAProxy in the root namespace balances across them with
# health checks on /healthz, `retries 0` and no redispatch; `hey` sends a
# bounded number of requests at a bounded rate while the hosts are deployed
# one at a time, each seen UP by HAProxy before the next:
#
#   reload    SIGHUP each host (rolling reload of its workers)
#   restart   SIGTERM each host, wait for its exit, start it again (the drain
#             delay takes it out of HAProxy before it drains)
#   upgrade   replace the binary, SIGQUIT each host (hot upgrade: the new
#             process takes the sockets over and must be the one serving)
#   kill -9   negative control: a host killed under load must make requests
#             fail, proof that this test can fail
#
# Pass: every response 200, no error, every deploy step done, and failures
# in the negative control. Prints a table of the figures.
#
# Needs root (network namespaces), haproxy, hey, socat, iproute2; skips with
# a message when they are missing unless SCALEOUT_REQUIRED=1 (as .ci/run
# sets). SCALEOUT_CARGO overrides the cargo command (e.g. "flock /tmp/x cargo").
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)

NAME=ctso                      # prefix of every namespace and link made here
NET=10.213.7                   # the test's own /24
WORK=/tmp/cluster-thread-scaleout
HOSTS=(1 2 3)
DRAIN_DELAY=1500ms             # > 2 health-check intervals of 200 ms, with margin
RATE_WORKERS=8                 # hey -c
RATE_PER_WORKER=50             # hey -q: 400 requests/s in all
DEADLINE=30                    # seconds, for every wait

log() { printf '[scaleout] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

skip() {
    if [[ "${SCALEOUT_REQUIRED:-0}" == 1 ]]; then
        die "required but cannot run: $*"
    fi
    log "SKIP: $*"
    exit 0
}

ns() { echo "$NAME-h$1"; }
ip_of() { echo "$NET.1$1"; }

# The pids of processes in host $1's namespace (ours only, by construction).
host_pids() { ip netns pids "$(ns "$1")" 2>/dev/null || true; }

# True while pid $1 runs (a zombie has exited).
alive() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ "$state" != Z ]]
}
exited() { ! alive "$1"; }

# kill_ours PIDFILE WORD: kills the pid in PIDFILE if its command line has WORD.
kill_ours() {
    [[ -f "$1" ]] || return 0
    local pid
    pid=$(cat "$1")
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"; then
        kill -9 "$pid"
    fi
    rm -f "$1"
}

# wait_for SECONDS WHAT COMMAND...: polls COMMAND until it succeeds.
wait_for() {
    local seconds=$1 what=$2
    shift 2
    local end=$((SECONDS + seconds))
    until "$@"; do
        ((SECONDS < end)) || { log "timed out after ${seconds}s waiting for $what"; return 1; }
        sleep 0.05
    done
}

teardown() {
    set +e
    kill_ours "$WORK/hey.pid" hey
    # Only the HAProxy this script started: its config is in $WORK.
    kill_ours "$WORK/haproxy.pid" "$WORK/haproxy.cfg"
    for i in "${HOSTS[@]}"; do
        if ip netns list | grep -qw "$(ns "$i")"; then
            for pid in $(host_pids "$i"); do kill -9 "$pid" 2>/dev/null; done
            local end=$((SECONDS + 10))
            while [[ -n "$(host_pids "$i")" ]] && ((SECONDS < end)); do sleep 0.05; done
            ip netns del "$(ns "$i")"
        fi
        ip link del "$NAME-v$i" 2>/dev/null
    done
    ip link del "$NAME-br" 2>/dev/null
    rm -rf "$WORK"
    set -e
}

# --- can we run here? ---------------------------------------------------
[[ $(id -u) == 0 ]] || skip "network namespaces need root"
for tool in ip haproxy hey socat; do
    command -v "$tool" >/dev/null || skip "$tool is not installed (apt-get install iproute2 haproxy hey socat)"
done
teardown  # what a previous run left
if ! ip netns add "$NAME-probe" 2>/dev/null; then
    skip "network namespaces are not permitted here (ip netns add failed)"
fi
ip netns del "$NAME-probe"
if ip -o addr show | grep -q " $NET\."; then
    die "$NET.0/24 is already in use on this machine; pick another NET"
fi
trap teardown EXIT
trap 'exit 130' INT TERM

# --- build ----------------------------------------------------------------
log "building the release same_port"
${SCALEOUT_CARGO:-cargo} build --release --example same_port --locked >&2
BIN="$REPO/target/release/examples/same_port"

# --- network ----------------------------------------------------------------
mkdir -p "$WORK"
ip link add "$NAME-br" type bridge
ip addr add "$NET.1/24" dev "$NAME-br"
ip link set "$NAME-br" up
for i in "${HOSTS[@]}"; do
    ip netns add "$(ns "$i")"
    ip link add "$NAME-v$i" type veth peer name "$NAME-p$i"
    ip link set "$NAME-p$i" netns "$(ns "$i")"
    ip link set "$NAME-v$i" master "$NAME-br" up
    ip -n "$(ns "$i")" addr add "$(ip_of "$i")/24" dev "$NAME-p$i"
    ip -n "$(ns "$i")" link set "$NAME-p$i" up
    ip -n "$(ns "$i")" link set lo up
    # No default route: from a namespace only $NET.0/24 and loopback are reachable.
    mkdir -p "$WORK/h$i"
    cp "$BIN" "$WORK/h$i/same_port"
done

# --- hosts ------------------------------------------------------------------
declare -A PID

# start_host I: starts host I's same_port, waits until it listens.
start_host() {
    local i=$1 logfile="$WORK/h$1/log"
    : >"$logfile"
    # `ip netns exec` execs the program: $! is its pid.
    ip netns exec "$(ns "$i")" env -u CLUSTER_THREAD_WORKERS -u CLUSTER_THREAD_BALANCE \
        "$WORK/h$i/same_port" --workers 2 --port 8000 --healthz /healthz \
        --drain-delay "$DRAIN_DELAY" --proxy-protocol >>"$logfile" 2>&1 &
    PID[$i]=$!
    wait_for "$DEADLINE" "host $i to listen" grep -q "^listening on 0.0.0.0:8000" "$logfile" \
        || { cat "$logfile" >&2; return 1; }
}

# One request straight to host I, with the PROXY header it expects; prints
# its x-worker-id (bash only, no curl).
worker_id() {
    local i=$1
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/$0/8000" || exit 1
        printf "PROXY TCP4 $1 $0 40000 8000\r\nGET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" >&3
        tr -d "\r" <&3 | awk -F": " "tolower(\$1)==\"x-worker-id\" {print \$2}"
    ' "$(ip_of "$i")" "$NET.1"
}

# GET /peer through HAProxy; prints the body: the client address the host saw.
peer_via_haproxy() {
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
        printf "GET /peer HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" >&3
        tr -d "\r" <&3 | tail -n 1
    ' "${FRONTEND##*:}"
}

# --- HAProxy ----------------------------------------------------------------
SERVERS=""
for i in "${HOSTS[@]}"; do
    SERVERS+="    server h$i $(ip_of "$i"):8000 check send-proxy-v2 check-send-proxy"$'\n'
done

# A frontend port below the ephemeral range, retried if taken.
start_haproxy() {
    local attempt port
    for attempt in $(seq 1 20); do
        port=$((20000 + RANDOM % 10000))
        ss -Hltn "sport = :$port" | grep -q . && continue
        sed -e "s|@WORK@|$WORK|g" -e "s|@PORT@|$port|g" \
            -e "/@SERVERS@/{r /dev/stdin" -e "d}" \
            "$REPO/tests/scaleout/haproxy.cfg.tmpl" <<<"$SERVERS" >"$WORK/haproxy.cfg"
        haproxy -db -f "$WORK/haproxy.cfg" >>"$WORK/haproxy.log" 2>&1 &
        echo $! >"$WORK/haproxy.pid"
        disown  # killed by pid at teardown, without a "Killed" line
        if wait_for 10 "HAProxy's stats socket" stats_ready; then
            FRONTEND="127.0.0.1:$port"
            return 0
        fi
        log "HAProxy did not start on port $port (attempt $attempt); retrying"
        kill_ours "$WORK/haproxy.pid" "$WORK/haproxy.cfg"
    done
    cat "$WORK/haproxy.log" >&2
    return 1
}

stats() { echo "$1" | socat -t 2 stdio "unix-connect:$WORK/haproxy.sock"; }
stats_ready() { alive "$(cat "$WORK/haproxy.pid")" && stats "show info" 2>/dev/null | grep -q '^Name: HAProxy'; }

# HAProxy's view of host I: 2 (running) is UP, 0 (stopped) is DOWN.
server_state() {
    stats "show servers state hosts" | awk -v s="h$1" '$4 == s {print $6}'
}
is_up() { [[ "$(server_state "$1")" == 2 ]]; }
is_down() { [[ "$(server_state "$1")" == 0 ]]; }
all_up() { for i in "${HOSTS[@]}"; do is_up "$i" || return 1; done; }

# --- load -------------------------------------------------------------------
start_load() {
    local n=$1
    hey -n "$n" -c "$RATE_WORKERS" -q "$RATE_PER_WORKER" -t 10 "http://$FRONTEND/" >"$WORK/hey.out" 2>&1 &
    echo $! >"$WORK/hey.pid"
    # A second of steady load before the first step (not a wait for a condition).
    sleep 1
}

# finish_load MODE N: waits for hey, adds a row of figures.
ROWS=()
finish_load() {
    local mode=$1 n=$2 pid
    pid=$(cat "$WORK/hey.pid")
    wait "$pid" || die "hey failed: $(cat "$WORK/hey.out")"
    rm -f "$WORK/hey.pid"
    local ok non200 errors
    ok=$(awk '/Status code distribution/ {s=1; next} /^$/ {s=0} s && $1 == "[200]" {print $2}' "$WORK/hey.out")
    non200=$(awk '/Status code distribution/ {s=1; next} /^$/ {s=0} s && $1 != "[200]" {n += $2} END {print n+0}' "$WORK/hey.out")
    errors=$(awk '/Error distribution/ {s=1; next} /^$/ {s=0} s {gsub(/[\[\]]/, "", $1); n += $1} END {print n+0}' "$WORK/hey.out")
    ok=${ok:-0}
    ROWS+=("$(printf '%-22s %9s %9s %9s %9s %9s' "$mode" "$n" "$ok" "$non200" "$errors" "${DEPLOY_SECONDS:--}")")
    LAST_FAILED=$((n - ok))
    log "$mode: $n sent, $ok × 200, $non200 other statuses, $errors errors"
    if ((non200 + errors > 0)); then sed -n '/Status code distribution/,$p' "$WORK/hey.out" >&2; fi
}

# The load must outlast the deploy, or the deploy was not under load.
still_loading() { alive "$(cat "$WORK/hey.pid")" || die "the load ended before the deploy did; raise its request count"; }

# --- deploys ----------------------------------------------------------------
declare -A RELOADS
reload_host() {
    local i=$1
    RELOADS[$i]=$((${RELOADS[$i]:-0} + 1))
    kill -HUP "${PID[$i]}"
    # Ids are never reused: with 2 workers, the r-th reload's have ids > 2r.
    wait_for "$DEADLINE" "host $i's new workers" new_workers_serve "$i" $((2 * ${RELOADS[$i]}))
    alive "${PID[$i]}" || die "host $i exited on SIGHUP"
    wait_for "$DEADLINE" "HAProxy to see host $i UP" is_up "$i"
}
# Four answers in a row from workers with ids above $2.
new_workers_serve() {
    local id n
    for n in 1 2 3 4; do
        id=$(worker_id "$1") && [[ -n "$id" ]] && ((id > $2)) || return 1
    done
}

restart_host() {
    local i=$1 pid=${PID[$1]}
    kill -TERM "$pid"
    # The drain delay: HAProxy takes the host out while it still serves.
    wait_for "$DEADLINE" "HAProxy to see host $i DOWN" is_down "$i"
    wait_for "$DEADLINE" "host $i to exit" exited "$pid"
    local status=0
    wait "$pid" || status=$?
    ((status == 0)) || die "host $i exited with status $status on SIGTERM"
    start_host "$i"
    wait_for "$DEADLINE" "HAProxy to see host $i UP" is_up "$i"
}

upgrade_host() {
    local i=$1 old=${PID[$1]} new
    # Deploy the new version: a new file (new inode) at the same path.
    cp "$BIN" "$WORK/h$i/same_port.new"
    touch "$WORK/h$i/same_port.new"
    mv -f "$WORK/h$i/same_port.new" "$WORK/h$i/same_port"
    kill -QUIT "$old"
    wait_for "$DEADLINE" "host $i's old process to drain and exit" exited "$old"
    local status=0
    wait "$old" || status=$?
    ((status == 0)) || die "host $i's old process exited with status $status"
    new=$(host_pids "$i")
    [[ -n "$new" && "$new" != *" "* && "$new" != "$old" ]] || die "host $i: expected one new process, found: $new"
    # The new process runs the new file.
    [[ "$(stat -L -c %i "/proc/$new/exe")" == "$(stat -c %i "$WORK/h$i/same_port")" ]] \
        || die "host $i: pid $new does not run the new binary"
    worker_id "$i" >/dev/null || die "host $i: the new process does not answer"
    PID[$i]=$new
    wait_for "$DEADLINE" "HAProxy to see host $i UP" is_up "$i"
}

# run_mode MODE N STEP: under load of N requests, STEP on each host in turn.
FAILED_MODES=()
run_mode() {
    local mode=$1 n=$2 step=$3
    wait_for "$DEADLINE" "every host UP" all_up
    log "$mode: $n requests at $((RATE_WORKERS * RATE_PER_WORKER))/s"
    start_load "$n"
    local began=$EPOCHREALTIME
    for i in "${HOSTS[@]}"; do
        "$step" "$i"  # under set -e: a failed step ends the run
        log "$mode: host $i done"
    done
    DEPLOY_SECONDS=$(awk -v a="$began" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')
    still_loading
    finish_load "$mode" "$n"
    ((LAST_FAILED == 0)) || FAILED_MODES+=("$mode")
}

# --- run ----------------------------------------------------------------------
for i in "${HOSTS[@]}"; do start_host "$i"; done
start_haproxy
log "HAProxy on $FRONTEND; hosts $(ip_of 1), $(ip_of 2), $(ip_of 3)"
wait_for "$DEADLINE" "every host UP" all_up

# PROXY protocol end to end: a host sees the client (this script, on
# loopback), not HAProxy's $NET.1.
PEER=$(peer_via_haproxy)
[[ $PEER == 127.0.0.1:* ]] || die "GET /peer through HAProxy answered '$PEER', not the client's 127.0.0.1:port"
log "PROXY protocol: GET /peer through HAProxy answered $PEER (the client, not HAProxy's $NET.1)"

run_mode "rolling reload" 3200 reload_host
run_mode "rolling restart" 6000 restart_host
run_mode "rolling hot upgrade" 3200 upgrade_host

# Negative control: kill -9 of a host under load must show failures.
wait_for "$DEADLINE" "every host UP" all_up
log "negative control: kill -9 of host 2 under load"
start_load 2000
kill -9 "${PID[2]}"
DEPLOY_SECONDS=-
finish_load "kill -9 (control)" 2000
CONTROL_FAILED=$LAST_FAILED

printf '\n%-22s %9s %9s %9s %9s %9s\n' mode requests 200 non-200 errors deploy-s
printf '%s\n' "${ROWS[@]}"
echo

((${#FAILED_MODES[@]} == 0)) || die "requests failed in: ${FAILED_MODES[*]}"
((CONTROL_FAILED > 0)) || die "the negative control lost no request: this test cannot see failures"
log "PASS: every deploy lost 0 requests; the negative control lost $CONTROL_FAILED"
