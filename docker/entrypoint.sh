#!/bin/sh
# Container entrypoint: size the thread pools to the container's CPU limit, then exec the command.
#
# torch, OpenMP (faiss) and BLAS size their pools from the host's core count, which inside a
# container with a CPU limit means more threads than CPU time: they get throttled and every
# OpenMP barrier waits for a descheduled thread. So the limit (cgroup v2 cpu.max, or v1
# cpu.cfs_quota_us / cpu.cfs_period_us) decides, rounded down, at least 1 and at most the CPUs
# this process may run on. A value set by the user (OMP_NUM_THREADS, ...) is kept.
# `exec` replaces this shell, so the server receives SIGTERM itself and drains.
set -eu

# Whole CPUs allowed by the CFS quota (rounded down, at least 1), or nothing without a limit.
cpu_quota() {
    if [ -r /sys/fs/cgroup/cpu.max ]; then
        read -r quota period < /sys/fs/cgroup/cpu.max
    elif [ -r /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
        read -r quota < /sys/fs/cgroup/cpu/cpu.cfs_quota_us
        read -r period < /sys/fs/cgroup/cpu/cpu.cfs_period_us
    else
        return 0
    fi
    case "$quota" in max | -1 | "") return 0 ;; esac
    whole=$((quota / period))
    echo $((whole < 1 ? 1 : whole))
}

# nproc: the CPUs this process may run on (cpuset/affinity); unset OMP_*, which it would echo.
cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
quota=$(cpu_quota)
threads=$cpus
if [ -n "$quota" ] && [ "$quota" -lt "$threads" ]; then
    threads=$quota
fi

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$threads}"
export MKL_NUM_THREADS="${MKL_NUM_THREADS:-$OMP_NUM_THREADS}"
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-$OMP_NUM_THREADS}"
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-$OMP_NUM_THREADS}"
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"

echo "dces-entrypoint: cpus=$cpus cpu-limit=${quota:-none} threads=$OMP_NUM_THREADS" >&2
exec "$@"
