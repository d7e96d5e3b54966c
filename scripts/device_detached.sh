#!/usr/bin/env bash
# A training run longer than one device call (600 s at most), e.g. issue 3's 20-minute CCP run,
# kept running *between* calls instead of being paused and resumed (train.stop_after_s).
# The first call starts scripts/device_sweep_ccp.sh in its own process session: the device harness
# kills what a call leaves running when it returns, except a process that started a new session
# (setsid), which runs on until the machine goes back. Every call then waits for the run up to
# WAIT_S seconds, prints its progress and, once it has ended, copies its results ($OUT/sweep.tgz,
# $OUT/sweep.txt) back and exits with the sweep's own exit status.
# Why: a run paused per call lost a checkpoint reload, worker start-up and cuDNN warm-up at every
# call, and nothing ran during the gap between two calls; here the gaps cost nothing. The run is
# still lost if the machine goes back (30 s idle) before it ends.
#   first call (carry .device/ccp400 .device/lead-wheels):
#     START=1 WAIT_S=560 bash scripts/device_detached.sh 'r20|-p train.time_budget_s 1200 ...'
#   later calls (nothing to carry):   WAIT_S=560 bash scripts/device_detached.sh
# Exit status: the sweep's once it has ended; 0 while it still runs ("RUNNING" is printed); 5 on a
# machine without the run (a fresh one: the earlier call's machine went back); 2/6 for misuse.
# SWEEP (default scripts/device_sweep_ccp.sh) and DETACHED_DIR (default /tmp/detached) exist for the tests.
set -uo pipefail
state=${DETACHED_DIR:-/tmp/detached}
sweep=${SWEEP:-scripts/device_sweep_ccp.sh}
final=${OUT:-/tmp/out}; mkdir -p "$final"
wait_s=${WAIT_S:-540}
if [ -n "${START:-}" ]; then
    [ $# -ge 1 ] || { echo "START=1 needs the sweep's 'NAME|OVERRIDES' arguments" >&2; exit 2; }
    [ ! -e "$state/started" ] \
        || { echo "a detached run was already started in $state: leave START unset in later calls" >&2; exit 6; }
    mkdir -p "$state/out"
    printf '%s\n' "$@" > "$state/specs.txt"
    date +%s > "$state/started"
    # the sweep's exit status lands in $state/rc when it ends, whatever the reason: the waiters look for it
    setsid nohup bash -c 'OUT="$1/out" bash "$2" "${@:3}"; echo $? > "$1/rc.tmp" && mv "$1/rc.tmp" "$1/rc"' \
        detached "$state" "$sweep" "$@" > "$state/log" 2>&1 < /dev/null &
    echo "started $sweep in its own session (pid $!), log $state/log"
elif [ ! -e "$state/started" ]; then
    echo "no detached run in $state: a fresh machine (the machine of the call that started it went back)" >&2
    exit 5
fi
t0=$SECONDS
while [ ! -e "$state/rc" ] && [ $((SECONDS - t0)) -lt "$wait_s" ]; do sleep 2; done
age=$(($(date +%s) - $(cat "$state/started")))
# progress: the last line of the run's log and of each variant's metrics
tail -n 3 "$state/log"
while IFS= read -r spec; do
    m=/tmp/ccpruns/${spec%%|*}/metrics.jsonl
    [ -f "$m" ] && echo "${spec%%|*}: $(tail -n 1 "$m" | cut -c 1-300)"
done < "$state/specs.txt"
if [ -e "$state/rc" ]; then
    cp -r "$state/out/." "$final/"
    cp "$state/log" "$final/detached.log"
    echo "ENDED after $age s with exit status $(cat "$state/rc")"
    exit "$(cat "$state/rc")"
fi
echo "RUNNING after $age s: call again (WAIT_S=$wait_s bash scripts/device_detached.sh) within 30 s"
