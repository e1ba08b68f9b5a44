#!/usr/bin/env bash
# Checks deploy/ without a cluster or a Docker engine:
#  - renders each Kustomize overlay (kubectl's built-in kustomize) and validates every
#    object against the Kubernetes schemas, CRD objects by their required fields, and the
#    deployment's rules (deploy/check/check_k8s.py);
#  - validates compose.yaml against the Compose Specification schema and its rules;
#  - lints the Dockerfile (hadolint) and checks its stages, users and base images.
# Installs its pinned tools (deploy/check/requirements.txt) into target/deploy-check/venv.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/deploy-check
venv="$out/venv"
requirements=deploy/check/requirements.txt

if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
    rm -rf "$venv"
    mkdir -p "$out"
    if ! python3 -m venv "$venv" 2>/dev/null; then
        # A bare Debian python3 lacks the venv module.
        rm -rf "$venv"
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/requirements.txt"
fi

status=0
rendered=()
for overlay in deploy/k8s/overlays/*/; do
    name="$(basename "$overlay")"
    if "$venv/bin/kubectl" kustomize "$overlay" >"$out/$name.yaml"; then
        rendered+=("$out/$name.yaml")
    else
        echo "FAIL $name: kustomize could not render $overlay"
        status=1
    fi
done
"$venv/bin/python" deploy/check/check_k8s.py "${rendered[@]}" || status=1

if "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml >"$out/compose-schema.log" 2>&1; then
    echo "ok   compose.yaml: Compose Specification schema"
else
    echo "FAIL compose.yaml: Compose Specification schema"
    sed 's/^/  /' "$out/compose-schema.log"
    status=1
fi
"$venv/bin/python" deploy/check/check_compose.py || status=1
if "$venv/bin/hadolint" --no-color -c deploy/hadolint.yaml deploy/Dockerfile >"$out/hadolint.log" 2>&1; then
    echo "ok   Dockerfile: hadolint"
else
    echo "FAIL Dockerfile: hadolint"
    sed 's/^/  /' "$out/hadolint.log"
    status=1
fi
"$venv/bin/python" deploy/check/check_dockerfile.py || status=1

if [ "$status" -ne 0 ]; then
    echo "deploy/check.sh: FAILED"
else
    echo "deploy/check.sh: all checks passed"
fi
exit "$status"
