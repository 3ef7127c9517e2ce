#!/usr/bin/env bash
# Build pyserving's images (`make image`): deploy/images.sh [server web export].
#
# The engine is podman if present, else docker (ENGINE= picks). Build arguments:
#   BASE_IMAGE       the FROM of every stage (default: the Dockerfile's python:3.11-slim-bookworm;
#                    with podman, where it is neither here nor pullable, deploy/base-image.sh
#                    makes localhost/pyserving-base:bookworm from Debian and that is used).
#   TORCH_INDEX_URL  the extra index torch's CPU build comes from (default: the Dockerfile's,
#                    PyTorch's own). Empty: none, for machines whose pip configuration already
#                    holds the CPU wheel (find-links), or whose index mirrors PyTorch's;
#                    with podman, empty unless set when a PIP_FIND_LINKS folder has the wheel.
# This machine's pip configuration goes in as read-only mounts of the build, never into an
# image: /etc/pip.conf, /etc/xdg/pip/, the CA bundle, the PIP_* environment (as a pip.conf) and
# local find-links folders. Docker's `build` takes no mounts: it gets the build arguments only.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
IMAGE_TAG=${IMAGE_TAG:-0.1.0}
ENGINE=${ENGINE:-$(command -v podman >/dev/null && echo podman || echo docker)}
BUILD_DIR=${BUILD_DIR:-$ROOT/build/images}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(server web export)

args=(--file "$ROOT/deploy/Dockerfile")
if [ -z "${BASE_IMAGE:-}" ] && [ "$ENGINE" = podman ]; then
    # The Dockerfile's base if it is here or can be pulled; else one made from Debian.
    official=$(sed -n 's/^ARG BASE_IMAGE=//p' "$ROOT/deploy/Dockerfile")
    if ! CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/deploy/podman/containers.conf} \
        sh -c "podman image exists '$official' || podman pull -q '$official'" >/dev/null; then
        BASE_IMAGE=localhost/pyserving-base:bookworm
        echo "no registry has $official: building on $BASE_IMAGE (deploy/base-image.sh)"
        "$ROOT/deploy/base-image.sh" "$BASE_IMAGE"
    fi
fi
[ -z "${BASE_IMAGE:-}" ] || args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
torch=$(sed -n 's/^RUN .*pip install torch==\([^ ]*\).*/\1/p' "$ROOT/deploy/Dockerfile")
[ -n "$torch" ] || { echo "no 'RUN ... pip install torch==V' in deploy/Dockerfile" >&2; exit 1; }
if [ -z "${TORCH_INDEX_URL+set}" ] && [ "$ENGINE" = podman ]; then
    # A CPU wheel in a find-links folder of this machine's pip: no extra index needed.
    for folder in ${PIP_FIND_LINKS:-}; do
        if compgen -G "${folder#file://}/torch-$torch+cpu-*.whl" >/dev/null; then
            TORCH_INDEX_URL=
            echo "torch $torch+cpu is in $folder: no extra index for it"
        fi
    done
fi
[ -z "${TORCH_INDEX_URL+set}" ] || args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")

if [ "$ENGINE" = podman ]; then
    export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/deploy/podman/containers.conf}
    # --format docker keeps HEALTHCHECK (OCI images have no field for it).
    args+=(--format docker --ulimit nofile=20000:20000 --ulimit nproc=32768:32768)
    for path in /etc/pip.conf /etc/xdg/pip /etc/ssl/certs/ca-certificates.crt; do
        [ -e "$path" ] && args+=(--volume "$path:$path:ro")
    done
    # PIP_FOO_BAR=value is pip's `foo-bar = value`: the same settings as a user pip.conf.
    mkdir -p "$BUILD_DIR"
    conf="$BUILD_DIR/pip-env.conf"
    echo "[global]" >"$conf"
    while IFS='=' read -r name value; do
        key=$(echo "${name#PIP_}" | tr 'A-Z_' 'a-z-')
        [ "$key" = config-file ] && continue
        echo "$key = $value" >>"$conf"
        if [ "$key" = find-links ] || [ "$key" = cert ] || [ "$key" = client-cert ]; then
            for local in $value; do
                [ -e "$local" ] && args+=(--volume "$local:$local:ro")
            done
        fi
    done < <(env | grep '^PIP_' || true)
    args+=(--volume "$conf:/root/.config/pip/pip.conf:ro")
fi

for target in "${targets[@]}"; do
    start=$SECONDS
    name="pyserving-$target:$IMAGE_TAG"
    before=$("$ENGINE" image inspect --format '{{.Id}}' "$name" 2>/dev/null || true)
    "$ENGINE" build "${args[@]}" --target "$target" --tag "$name" "$ROOT"
    after=$("$ENGINE" image inspect --format '{{.Id}}' "$name")
    # The image the tag named before has no name now: each rebuild would leave one behind
    # (2-3 GB a `make test`). A container still using it keeps it.
    if [ -n "$before" ] && [ "$before" != "$after" ]; then
        "$ENGINE" rmi "$before" >/dev/null 2>&1 || true
    fi
    echo "$name built in $((SECONDS - start)) s"
done
