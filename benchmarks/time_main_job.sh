#!/usr/bin/env bash
# Times the README's first command (`make demo`) the way a newcomer runs it: a fresh clone, and by
# default an empty HOME so uv, Maven and pip caches start cold (set-up included). Then times a
# second run of the same logical date (no download, tables unchanged).
# Usage: benchmarks/time_main_job.sh [--warm]   (--warm keeps your HOME's package caches)
# Writes benchmarks/results/main_job.txt.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/govlake-bench.XXXXXX)
git clone -q "$repo" "$work/govlake"
home=$HOME
if [[ "${1:-}" != "--warm" ]]; then home=$work/home; mkdir -p "$home"; fi
cd "$work/govlake"
t0=$(date +%s)
env HOME="$home" PYENV_ROOT="${PYENV_ROOT:-$HOME/.pyenv}" make demo > "$work/first.log" 2>&1
t1=$(date +%s)
env HOME="$home" PYENV_ROOT="${PYENV_ROOT:-$HOME/.pyenv}" make demo > "$work/second.log" 2>&1
t2=$(date +%s)
mkdir -p "$repo/benchmarks/results"
{
  echo "date: $(date -u +%FT%TZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
  if [[ "${1:-}" == "--warm" ]]; then echo "caches: warm"; else echo "caches: cold (empty HOME)"; fi
  echo "make demo, fresh clone, set-up included: $((t1 - t0)) s"
  echo "make demo again, same logical date:      $((t2 - t1)) s"
} | tee "$repo/benchmarks/results/main_job.txt"
rm -rf "$work"
