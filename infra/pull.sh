#!/bin/sh
# The deployment's pull step (infra/prefect.yaml): bring the checkout up to date with its
# branch's upstream before a scheduled run, so the run reproduces what the branch holds (code,
# params.yaml, dvc.yaml), not whatever was last checked out.
#
# A fast-forward only: local commits, or edits to tracked files that the update would touch
# (dvc.lock after a local run, say), stop the run here with git's message naming them, and
# nothing is overwritten. A branch with no upstream (a checkout that tracks no remote) runs as
# it is, and says so; so does any checkout with RETDM_PULL=0 in the worker's environment (e.g. a
# worker that cannot reach the remote: the fetch would fail the run).
#
# Usage: infra/pull.sh [CHECKOUT]    (default: the current directory)
set -eu
cd "${1:-.}"
if [ "${RETDM_PULL:-1}" = 0 ]; then
    echo "pull.sh: RETDM_PULL=0; running the checkout as it is, at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    exit 0
fi
if ! upstream=$(git rev-parse --abbrev-ref --symbolic-full-name '@{upstream}' 2>/dev/null); then
    echo "pull.sh: $(git rev-parse --abbrev-ref HEAD) has no upstream branch; running the checkout as it is"
    exit 0
fi
git fetch --quiet
git merge --ff-only "$upstream"
echo "pull.sh: at $(git rev-parse --short HEAD), up to date with $upstream"
