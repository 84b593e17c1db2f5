#!/usr/bin/env bash
# Dask started by hand inside ONE SLURM job, for sites where dask-jobqueue may not submit jobs
# (no sbatch from a running job, no long-lived process on the login node):
#
#   sbatch cluster/sbatch-manual.sh run content.jpg style.jpg -o out.tif ...
#
# starts `dask scheduler` (writing a scheduler file), one `dask worker` per node (or
# `dask cuda worker`, one per GPU, when a node has several GPUs and dask-cuda is installed),
# runs `daskstyle ARGS... --cluster ADDRESS`, and stops the workers and the scheduler.
# On one node everything listens on 127.0.0.1 only. On several nodes (-N 2 ...) the scheduler
# listens on $DASKSTYLE_INTERFACE (e.g. ib0; required): unencrypted, so only on a private network.
#
# EDIT the #SBATCH lines for your site. Environment knobs: DASKSTYLE_VENV (a venv to activate),
# DASKSTYLE (the command to run, default "daskstyle"), DASKSTYLE_INTERFACE (several nodes).
#SBATCH -J daskstyle
#SBATCH -p gpu
#SBATCH -A myproject
#SBATCH -N 1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --gres=gpu:1
#SBATCH --mem=64G
#SBATCH -t 04:00:00
#SBATCH -o daskstyle-%j.out
set -euo pipefail

[ $# -gt 0 ] || { echo "usage: sbatch $0 DASKSTYLE-ARGS..." >&2; exit 2; }
[ -z "${DASKSTYLE_VENV:-}" ] || source "$DASKSTYLE_VENV/bin/activate"
DASKSTYLE=${DASKSTYLE:-daskstyle}
WORK=${SLURM_SUBMIT_DIR:-$PWD}/dask-${SLURM_JOB_ID:-manual}
LOCAL=${TMPDIR:-/tmp}
THREADS=${SLURM_CPUS_PER_TASK:-2}
mkdir -p "$WORK"
SCHEDULER_FILE=$WORK/scheduler.json
rm -f "$SCHEDULER_FILE"

if [ "${SLURM_JOB_NUM_NODES:-1}" = 1 ]; then
    where=(--host 127.0.0.1)
    dashboard=127.0.0.1:8787
else
    : "${DASKSTYLE_INTERFACE:?set DASKSTYLE_INTERFACE (e.g. ib0) for a job on several nodes}"
    where=(--interface "$DASKSTYLE_INTERFACE")
    dashboard=$(python -c "from distributed.utils import get_ip_interface as ip; print(ip('$DASKSTYLE_INTERFACE'))"):8787
fi

# GPUs this job got on each node (SLURM sets CUDA_VISIBLE_DEVICES for --gres=gpu:N).
gpus=0
[ -z "${CUDA_VISIBLE_DEVICES:-}" ] || gpus=$(tr ',' '\n' <<< "$CUDA_VISIBLE_DEVICES" | grep -c .)
worker=(dask worker --nworkers 1 --nthreads "$THREADS")
if [ "$gpus" -gt 1 ] && python -c "import dask_cuda" 2>/dev/null; then
    worker=(dask cuda worker --nthreads "$((THREADS / gpus > 0 ? THREADS / gpus : 1))")
fi
[ "$gpus" = 0 ] || worker+=(--resources GPU=1)  # dask-cuda does not declare GPUs by itself
worker+=(--scheduler-file "$SCHEDULER_FILE" --local-directory "$LOCAL" --death-timeout 120 "${where[@]}")

pids=()  # what this script started, stopped by PID on exit
stop() { [ ${#pids[@]} = 0 ] || { kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null; } || true; }
trap stop EXIT

dask scheduler --scheduler-file "$SCHEDULER_FILE" "${where[@]}" --port 0 --dashboard-address "$dashboard" \
    > "$WORK/scheduler.log" 2>&1 &
pids+=($!)
for _ in $(seq 120); do [ -s "$SCHEDULER_FILE" ] && break; sleep 1; done
[ -s "$SCHEDULER_FILE" ] || { echo "no scheduler file after 120 s: see $WORK/scheduler.log" >&2; exit 1; }
read -r ADDRESS port < <(python -c "import json, sys; s = json.load(open(sys.argv[1]))
print(s['address'], s['services'].get('dashboard', ''))" "$SCHEDULER_FILE")
dashboard=${dashboard%:*}:$port  # the port it really got (8787 may have been taken)

# One worker step on every node of the job (--overlap: it shares the CPUs with this script).
srun --overlap --ntasks-per-node=1 --cpus-per-task="$THREADS" "${worker[@]}" > "$WORK/workers.log" 2>&1 &
pids+=($!)

echo "scheduler $ADDRESS, dashboard http://$dashboard/status, logs in $WORK"
$DASKSTYLE "$@" --cluster "$ADDRESS"  # DASKSTYLE may be several words
