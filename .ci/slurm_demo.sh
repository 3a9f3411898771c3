#!/usr/bin/env bash
# Run the demo through SLURM (profiles/slurm) on a single-node cluster on localhost and
# check that its results equal the local run's (results/, made by `snakemake --cores 2`).
# GPU-tagged rules get the node's fake GPU and run on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${CINERECON_SLURM_DIR:-/tmp/cinerecon-slurm}
OUT=results_slurm
trap '.ci/slurm_cluster.sh down "$DIR"' EXIT
.ci/slurm_cluster.sh up "$DIR"
eval "$(.ci/slurm_cluster.sh env "$DIR")"

rm -rf "$OUT"
start=$(date +%s)
# Snakemake ignores SIGTERM, hence -k. --cores 2: one node of 2 CPUs caps a group job.
# DeepRecon's, DMCVR's, Gemini-GAN's and the MAE's CPU training is left out to keep CI short; every other rule runs
# on SLURM and what it produces must equal the local run's.
printf 'results: %s\ndeeprecon:\n  enabled: false\ndmcvr:\n  enabled: false\ngemini_gan:\n  enabled: false\nmae:\n  enabled: false\n' "$OUT" > "$DIR/demo_overrides.yaml"
# Polling from 2 s on: the demo's jobs last seconds, the profile's 20 s suits real clusters.
# --max-threads 1: the local run (.ci/run, no GPU) gives GPU-tagged jobs one thread each, and
# torch's CPU results depend on its thread count.
timeout -k 30 1800 snakemake --profile profiles/slurm --cores 2 --max-threads 1 \
    --configfile "$DIR/demo_overrides.yaml" --slurm-init-seconds-before-status-checks 2
echo "slurm demo: $(( $(date +%s) - start )) s"
squeue --noheader | wc -l | xargs echo "jobs left in the queue:"
python .ci/compare_results.py results "$OUT"
