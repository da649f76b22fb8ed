#!/bin/bash
#SBATCH --account=project_<PROJECT_NUMBER>
#SBATCH --job-name=dslab
#SBATCH --output=/scratch/project_<PROJECT_NUMBER>/dslab_%A.txt
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=40
#SBATCH --mem=80G
#SBATCH --partition=small
#SBATCH --gres=nvme:1000
#SBATCH --time=3-00:00:00
#
# Stage every format to the temp storage (the node's NVMe, $LOCAL_SCRATCH), time each copy,
# unzip and stream-unzip, then benchmark patch loads on every storage x format.
#
#   sbatch job.sh          on CSC Puhti, from the repository folder (fill in the placeholders)
#   bash job.sh            on a workstation or the offline lab, from the repository folder
#
# Settings come from the environment and from .env in the working folder (the modules load
# it, never overriding variables already set). Override the steps' options with
# DSLAB_JOB_STAGE_ARGS and DSLAB_JOB_BENCHMARK_ARGS.
set -euo pipefail

repo="${SLURM_SUBMIT_DIR:-$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")}"
python="$repo/.venv/bin/python"
[ -x "$python" ] || python=python3
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"

stage_args=${DSLAB_JOB_STAGE_ARGS:---from-network safe cog zarr zarr_sharded zipzarr icechunk safe_virtual --from-s3 zipzarr --unzip --stream-unzip --overwrite}
benchmark_args=${DSLAB_JOB_BENCHMARK_ARGS:---storages network temp s3 cdse}

echo "== stage: $stage_args"
# shellcheck disable=SC2086  # the arguments are meant to be split
"$python" -m sentinel2_l1c.stage $stage_args
echo "== benchmark: $benchmark_args"
# shellcheck disable=SC2086
"$python" -m sentinel2_l1c.benchmark_patch_load $benchmark_args
