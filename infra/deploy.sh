#!/bin/sh
# Register the deployments of infra/prefect.yaml with a Prefect server: create their
# process work pool if missing, then `prefect deploy` every deployment of the file.
#
# Usage: infra/deploy.sh                                   PREFECT_API_URL=http://HOST:4200/api set
#        docker compose run --rm worker infra/deploy.sh   from infra/, in a worker's environment
#
# The pool name is read from infra/prefect.yaml, the one place it is set. PROJECT_ROOT is left
# out of the deployment on purpose: the pull step resolves {{ $PROJECT_ROOT }} on the worker, so
# each worker runs the flow in its own checkout (the compose workers set PROJECT_ROOT=/repo).
# Environment: PREFECT_API_URL (required), PREFECT (the prefect command: prefect),
#              PYTHON (a Python with PyYAML: python).
set -eu

if [ -z "${PREFECT_API_URL:-}" ]; then
    sed -n '/^# Usage:/,/^#$/s/^# \{0,1\}//p' "$0" >&2
    echo "deploy.sh: set PREFECT_API_URL to the server's API, e.g. http://localhost:4200/api" >&2
    exit 2
fi
prefect=${PREFECT:-prefect}
python=${PYTHON:-python}

cd "$(dirname "$0")/.."
pool=$($python -c 'import sys, yaml
pools = {d["work_pool"]["name"] for d in yaml.safe_load(open("infra/prefect.yaml"))["deployments"]}
if len(pools) != 1:
    sys.exit(f"deploy.sh: infra/prefect.yaml: expected one work_pool.name across deployments, found {sorted(pools)}")
print(pools.pop())')

if $prefect work-pool inspect "$pool" >/dev/null 2>&1; then
    echo "deploy.sh: work pool '$pool' exists"
else
    $prefect work-pool create --type process "$pool"
fi
unset PROJECT_ROOT
$prefect --no-prompt deploy --prefect-file infra/prefect.yaml --all
echo "deploy.sh: done; start a run with: prefect deployment run 'reproduce/nightly-reproduce'"
