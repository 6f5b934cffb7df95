# Shared by the release steps (sourced). Every step runs the same on a laptop and in CI:
#   IMAGE      image repository                 (default registry.example.com/vocalis)
#   TAG        image tag                        (default: git describe)
#   NAMESPACE  Kubernetes namespace             (default vocalis)
#   OVERLAY    deploy/k8s/overlays/<OVERLAY>    (default production)
#   RELEASE_ENV file where a step leaves what the next ones need (IMAGE_REF after push)
#   DRY_RUN=1  print the docker/kubectl commands instead of running them
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
IMAGE="${IMAGE:-registry.example.com/vocalis}"
TAG="${TAG:-$(git -C "$ROOT" describe --tags --always --dirty 2>/dev/null || echo dev)}"
NAMESPACE="${NAMESPACE:-vocalis}"
OVERLAY="${OVERLAY:-production}"
RELEASE_ENV="${RELEASE_ENV:-${TMPDIR:-/tmp}/vocalis-release.env}"
SELECTOR="app.kubernetes.io/part-of=vocalis"
if [ -f "$RELEASE_ENV" ]; then
  # shellcheck disable=SC1090
  . "$RELEASE_ENV"
fi

log() { printf '[release] %s\n' "$*" >&2; }

# Run a command, or only print it with DRY_RUN=1.
run() {
  printf '+ %s\n' "$*"
  if [ "${DRY_RUN:-0}" != 1 ]; then "$@"; fi
}

remember() { # remember KEY VALUE: for the later steps
  touch "$RELEASE_ENV"
  grep -v "^$1=" "$RELEASE_ENV" > "$RELEASE_ENV.new" || true
  printf '%s=%q\n' "$1" "$2" >> "$RELEASE_ENV.new"
  mv "$RELEASE_ENV.new" "$RELEASE_ENV"
}

# The overlay's manifests with the pushed image (IMAGE_REF, by digest when pushed) put in
# place of the overlay's own: a throw-away overlay on top of it, rendered by kubectl's
# built-in kustomize. Prints the path of the rendered file.
render_manifests() {
  local ref="${IMAGE_REF:-$IMAGE:$TAG}" current name dir out
  current="$(kubectl kustomize "$ROOT/deploy/k8s/overlays/$OVERLAY" | awk '$1 == "image:" {print $2; exit}')"
  name="${current%@*}"
  name="${name%:*}"
  dir="$(mktemp -d "$ROOT/deploy/k8s/overlays/.release.XXXXXX")"
  out="$(mktemp "${TMPDIR:-/tmp}/vocalis-manifests.XXXXXX.yaml")"
  {
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "resources: [../$OVERLAY]"
    echo "images:"
    echo "  - name: $name"
    if [[ "$ref" == *@sha256:* ]]; then
      echo "    newName: ${ref%@*}"
      echo "    digest: ${ref#*@}"
    else
      echo "    newName: ${ref%:*}"
      echo "    newTag: \"${ref##*:}\""
    fi
  } > "$dir/kustomization.yaml"
  kubectl kustomize "$dir" > "$out"
  rm -rf "$dir"
  echo "$out"
}

# Names of the Deployments in a rendered manifest file.
deployments_in() {
  awk '/^kind: /{kind=$2} /^  name: /{if (kind == "Deployment") print $2}' "$1"
}
