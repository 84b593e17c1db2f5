#!/usr/bin/env bash
# A one-node SLURM on this Debian machine (munged + slurmctld + slurmd), for tests and trials.
#
#   eval "$(cluster/start-single-node-slurm.sh)"   # start (as root); sets SLURM_CONF
#   cluster/start-single-node-slurm.sh --stop      # stop the daemons this script started
#
# Everything lives in $DASKSTYLE_SLURM_DIR (default /tmp/daskstyle-slurm): slurm.conf, state,
# logs, and the PID files used by --stop. Only the `export SLURM_CONF=...` line goes to stdout;
# progress goes to stderr. Needs root, apt-get (Debian bookworm packages) and no systemd.
# The node is called $(hostname) at 127.0.0.1, partition "debug", no GPUs, no accounting.
set -euo pipefail

DIR=${DASKSTYLE_SLURM_DIR:-/tmp/daskstyle-slurm}
CONF=$DIR/slurm.conf
say() { echo "start-single-node-slurm: $*" >&2; }

alive() {  # a running (not zombie) process $1 whose command name is $2
    local stat comm
    read -r stat comm < <(ps -o stat=,comm= -p "$1" 2>/dev/null) || return 1
    [ "${stat:0:1}" != Z ] && [ "$comm" = "$2" ]
}

stop() {
    # Stop, by PID, only what this script started (each one recorded in $DIR/started):
    # SIGTERM, and SIGKILL after 10 s (a slurmd that lost munge ignores SIGTERM).
    [ -f "$DIR/started" ] || { say "nothing recorded in $DIR/started"; return 0; }
    while read -r name pidfile; do
        pid=$(cat "$pidfile" 2>/dev/null) || continue
        alive "$pid" "$name" || continue
        kill "$pid"
        for _ in $(seq 20); do alive "$pid" "$name" || break; sleep 0.5; done
        if alive "$pid" "$name"; then kill -9 "$pid"; fi
        say "stopped $name (pid $pid)"
    done < <(tac "$DIR/started")
    rm -f "$DIR/started"
}

if [ "${1:-}" = "--stop" ]; then
    stop
    exit 0
fi

[ "$(id -u)" = 0 ] || { say "needs root (apt-get, munged, slurmd)"; exit 1; }

t0=$(date +%s)
# Already running from an earlier call: just print the line again.
if grep -qs '^slurmctld ' "$DIR/started" && alive "$(cat "$DIR/slurmctld.pid")" slurmctld \
    && SLURM_CONF=$CONF timeout 5 sinfo -h -o %T 2>/dev/null | grep -q idle; then
    echo "export SLURM_CONF=$CONF"
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sinfo >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurmctld slurmd slurm-client munge"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >&2
fi

mkdir -p "$DIR"/{state,spool,log}
: >> "$DIR/started"

# munge: authentication between the SLURM daemons and clients.
if ! munge -n >/dev/null 2>&1; then  # no munged answering yet
    [ -s /etc/munge/munge.key ] || { /usr/sbin/mungekey --create >&2 2>/dev/null || \
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; }
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge && chown munge:munge /run/munge
    runuser -u munge -- /usr/sbin/munged
    echo "munged /run/munge/munged.pid" >> "$DIR/started"
    say "munged started"
fi

NODE=$(hostname)
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
cat > "$CONF" <<EOF
# Written by cluster/start-single-node-slurm.sh: one node, for tests and trials.
ClusterName=daskstyle
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$CONF

slurmctld -f "$CONF"
echo "slurmctld $DIR/slurmctld.pid" >> "$DIR/started"
slurmd -f "$CONF"
echo "slurmd $DIR/slurmd.pid" >> "$DIR/started"

deadline=$(( $(date +%s) + 60 ))
while [ "$(date +%s)" -lt $deadline ]; do
    if timeout 5 sinfo -h -o %T 2>/dev/null | grep -q idle; then
        say "node $NODE idle, $(( $(date +%s) - t0 )) s after the start of this script; stop with: $0 --stop"
        echo "export SLURM_CONF=$CONF"
        exit 0
    fi
    sleep 1
done
say "the node was not idle after 60 s; see $DIR/log/ (stopping what was started)"
stop
exit 1
