#!/bin/sh
# Configure the DVC remote `store`, the default remote that workers push stage outputs to and
# pull them from (python -m pipelines.flows --remote store).
#
# Usage: infra/remote.sh minio                            s3://$RETDM_BUCKET/dvc on the compose MinIO
#        infra/remote.sh s3 s3://BUCKET/PREFIX [ENDPOINT]  AWS S3, or any S3-compatible store at ENDPOINT
#        infra/remote.sh local DIR                         a folder (a shared mount; tests)
#
# It writes the remote to .dvc/config: commit that, and every checkout pushes to the same place.
# Secrets never go there. Workers read AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from their
# environment, and for `minio` the endpoint too (AWS_ENDPOINT_URL_S3: http://minio:9000 inside
# docker compose, http://localhost:9000 on the host), so one config serves both sides.
# RETDM_LOCAL_CREDENTIALS=1 also copies the two keys from the environment into
# .dvc/config.local (git-ignored), for machines without them in the environment.
#
# Environment: RETDM_REMOTE (default store), RETDM_BUCKET (retdm), DVC (the dvc command: dvc).
set -eu

usage() {
    sed -n '/^# Usage:/,/^#$/s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

remote=${RETDM_REMOTE:-store}
bucket=${RETDM_BUCKET:-retdm}
dvc=${DVC:-dvc}
endpoint=""

[ $# -ge 1 ] || usage
case $1 in
    minio) [ $# -eq 1 ] || usage; url="s3://$bucket/dvc" ;;
    s3)
        [ $# -eq 2 ] || [ $# -eq 3 ] || usage
        case $2 in s3://?*) ;; *) echo "remote.sh: expected an s3://BUCKET/PREFIX URL, got '$2'" >&2; exit 2 ;; esac
        url=$2
        endpoint=${3:-}
        ;;
    local) [ $# -eq 2 ] || usage; mkdir -p "$2"; url=$(cd "$2" && pwd) ;;
    *) usage ;;
esac

cd "$(dirname "$0")/.."
# The remote is replaced whole: its git-ignored part first (credentials of an earlier s3 remote
# would make a local one invalid), then --force replaces its section, endpointurl included.
if [ -f .dvc/config.local ]; then $dvc remote remove --local "$remote" >/dev/null 2>&1 || true; fi
$dvc remote add --default --force "$remote" "$url"
[ -z "$endpoint" ] || $dvc remote modify "$remote" endpointurl "$endpoint"

if [ "${RETDM_LOCAL_CREDENTIALS:-0}" = 1 ]; then
    case $url in s3://*) ;; *) echo "remote.sh: RETDM_LOCAL_CREDENTIALS=1 is for s3 remotes" >&2; exit 2 ;; esac
    key_id=${AWS_ACCESS_KEY_ID:?set AWS_ACCESS_KEY_ID to copy it}
    secret=${AWS_SECRET_ACCESS_KEY:?set AWS_SECRET_ACCESS_KEY to copy it}
    $dvc remote modify --local "$remote" access_key_id "$key_id"
    $dvc remote modify --local "$remote" secret_access_key "$secret"
fi

echo "remote.sh: DVC remote '$remote' (default) -> $url${endpoint:+ at $endpoint}"
if [ "$1" = minio ]; then
    echo "remote.sh: from the host: export AWS_ENDPOINT_URL_S3=http://localhost:${MINIO_API_PORT:-9000}" \
         "AWS_ACCESS_KEY_ID=<MINIO_ROOT_USER> AWS_SECRET_ACCESS_KEY=<MINIO_ROOT_PASSWORD>"
fi
