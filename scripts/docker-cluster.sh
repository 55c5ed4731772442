#!/usr/bin/env bash
# The provider cluster of docker/cluster/compose.yml, in one command per step.
#   up              bus keys (first time), the image (when missing), `compose up -d`, waits until healthy
#   job PROMPT [MODEL]   a paid job from the requester container to the provider cluster; prints its JSON
#   status          the provider's and the requester's `lcp-cli status`
#   keys            only make the bus keys (lcp-cli bus keygen, owned by the image's user)
#   compose ARGS..  docker compose with this cluster's files and project (ps, logs, down -v, ...)
#   down            stop and remove the containers and networks; `down -v` removes the volumes too
# Environment:
#   LCP_IMAGE              the node image [lcp-local/lcp:dev]
#   LCP_CLUSTER_PROJECT    compose project name [lcp-cluster]
#   LCP_CLUSTER_SECRETS    where the bus keys live [docker/cluster/secrets]
#   LCP_CLUSTER_FILES      more compose files, ':'-separated (e.g. docker/cluster/bus-port.yml)
#   LCP_CLUSTER_TIMEOUT    seconds `up` and `job` wait [180]
#   LCP_LIGHTNING_PUBLISH, LCP_GATEWAY_PUBLISH, LCP_BUS_PUBLISH: published ports (see compose.yml)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
source "$root/scripts/docker-common.sh"
export LCP_IMAGE
project="${LCP_CLUSTER_PROJECT:-lcp-cluster}"
secrets="${LCP_CLUSTER_SECRETS:-$root/docker/cluster/secrets}"
mkdir -p "$secrets"
export LCP_CLUSTER_SECRETS="$(cd "$secrets" && pwd)"
timeout="${LCP_CLUSTER_TIMEOUT:-180}"
# The uid:gid the image runs as (see Dockerfile): the key files must be theirs, mode 0600.
image_user="10001:10001"

files=(-f "$root/docker/cluster/compose.yml")
IFS=':' read -r -a extra <<< "${LCP_CLUSTER_FILES:-}"
for f in "${extra[@]}"; do [ -n "$f" ] && files+=(-f "$f"); done
if docker compose version >/dev/null 2>&1; then dc=(docker compose); else dc=(docker-compose); fi
compose() { "${dc[@]}" -p "$project" "${files[@]}" "$@"; }

die() { echo "docker-cluster: $*" >&2; exit 1; }

keys() {
  [ -f "$LCP_CLUSTER_SECRETS/server.key" ] && return 0
  echo "== bus keys into $LCP_CLUSTER_SECRETS" >&2
  # Made inside the image with its lcp-cli (the same code lcpd uses), then handed to the image's
  # user: compose mounts the files as they are, and the services refuse keys others can read.
  docker run --rm --user 0:0 --network none -v "$LCP_CLUSTER_SECRETS:/keys" "$LCP_IMAGE" \
    sh -c "lcp-cli bus keygen /keys >/dev/null && chown -R $image_user /keys && chmod 700 /keys"
}

image() {
  docker image inspect "$LCP_IMAGE" >/dev/null 2>&1 && return 0
  echo "== $LCP_IMAGE not found: building it" >&2
  bash "$root/scripts/docker-build.sh"
}

# Waits until every container of the project that has a health check is healthy.
wait_healthy() {
  local deadline=$(( $(date +%s) + timeout )) bad ids
  while :; do
    ids="$(compose ps -q)"
    bad="$(for id in $ids; do docker inspect -f '{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id"; done \
      | grep -v -E ' (healthy|running)$' || true)"
    [ -n "$ids" ] && [ -z "$bad" ] && return 0
    [ "$(date +%s)" -lt "$deadline" ] || die "not healthy after ${timeout}s: $bad"
    sleep 1
  done
}

field() { sed -n "s/^ *\"$1\": \"\([^\"]*\)\".*/\1/p" | head -n 1; }

job() {
  local prompt="${1:?usage: docker-cluster.sh job PROMPT [MODEL]}" model="${2:-gpt-5.2}" provider deadline
  provider="$(compose exec -T lcpd lcp-cli --json status | field node_id)"
  [ -n "$provider" ] || die "the provider's lcpd reports no node id (is the cluster up?)"
  # The requester dials the provider's peerd by its name on the lightning network (persistent:
  # peerd redials after a restart of either side).
  compose exec -T requester lcp-cli peer connect "$provider@peerd:9735" --persistent >/dev/null
  deadline=$(( $(date +%s) + timeout ))
  until compose exec -T requester lcp-cli job peers | grep -q "^$provider .*$model"; do
    [ "$(date +%s)" -lt "$deadline" ] || die "the provider's manifest did not reach the requester in ${timeout}s"
    sleep 1
  done
  compose exec -T requester lcp-cli --json job run "$provider" -m "$model" -p "$prompt"
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  up) image; keys; compose up -d "$@"; wait_healthy; compose ps ;;
  keys) image; keys ;;
  job) job "$@" ;;
  status)
    compose exec -T lcpd lcp-cli status
    echo
    compose exec -T requester lcp-cli status ;;
  compose) compose "$@" ;;
  down) compose down "$@" ;;
  *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
