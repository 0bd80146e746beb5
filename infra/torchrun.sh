#!/bin/sh
# Launch one training stage by hand on several GPUs and nodes: torchrun (DDP, c10d rendezvous)
# around `python -m pipelines.train DATASET METHOD STAGE SEED`. Run the same command on every node,
# in a checkout of the same commit; the processes meet at RDZV_ENDPOINT (a host:port on node 0
# that the other nodes reach) and torchrun numbers the nodes itself.
#
# Usage: infra/torchrun.sh DATASET METHOD STAGE SEED    STAGE: pretrain | embed | finetune; SEED: of params.yaml seeds
#
# Environment (default):
#   NNODES          nodes in the job, or MIN:MAX for an elastic job (1)
#   NPROC_PER_NODE  processes per node: a number, or gpu for one per visible GPU (gpu)
#   RDZV_ENDPOINT   HOST:PORT of the rendezvous, the same on every node (localhost:29500)
#   RDZV_ID         job id, the same on every node (retdm-DATASET-METHOD-STAGE-SEED)
#   MAX_RESTARTS    restarts of the whole group after a failure (0)
#   TORCHRUN        the torchrun command (torchrun)
#   DRY_RUN         1: print the command instead of running it
# Outside `dvc repro` this writes runs/DATASET/seedSEED/METHOD/STAGE/ without recording it in dvc.lock;
# `dvc commit` records it afterwards.
set -eu

if [ $# -ne 4 ]; then
    sed -n '/^# Usage:/,/^#$/s/^# \{0,1\}//p' "$0" >&2
    exit 2
fi
case $3 in
    pretrain | embed | finetune) ;;
    *) echo "torchrun.sh: STAGE must be pretrain, embed or finetune, got '$3'" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."
# TORCHRUN unquoted on purpose: it may be a command with arguments (python -m torch.distributed.run).
# shellcheck disable=SC2086
set -- ${TORCHRUN:-torchrun} \
    --nnodes "${NNODES:-1}" \
    --nproc-per-node "${NPROC_PER_NODE:-gpu}" \
    --rdzv-backend c10d \
    --rdzv-endpoint "${RDZV_ENDPOINT:-localhost:29500}" \
    --rdzv-id "${RDZV_ID:-retdm-$1-$2-$3-$4}" \
    --max-restarts "${MAX_RESTARTS:-0}" \
    -m pipelines.train "$1" "$2" "$3" "$4"

if [ "${DRY_RUN:-0}" = 1 ]; then
    echo "$@"
else
    exec "$@"
fi
