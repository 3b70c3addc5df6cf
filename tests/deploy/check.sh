#!/usr/bin/env bash
# Offline checks of the deploy artefacts (Dockerfile, k8s/, terraform/, firestore.indexes.json),
# run by `make test`; no cluster, no cloud, no Docker daemon:
#   - both kustomize overlays render, and validate against the Kubernetes schemas of the GKE
#     versions targeted (kubernetes-validate, strict) and the GKE custom resources' CRDs;
#   - GKE Autopilot's own rules on the rendered manifests (no host network/ports, privileged
#     or added capabilities; requests on every container within Autopilot's ratios);
#   - every variable given to a firesfu container is a flag of its subcommand and every
#     required flag is set (parsed from `firesfu <cmd> --help`);
#   - firestore.indexes.json serves every query in src/ and its TTL list is docs/signalling.md's;
#   - checkov on the rendered manifests, the Dockerfile and terraform/ (every skip justified
#     inline), and `terraform fmt -check`.
# Tools are installed idempotently into target/deploy/venv (pinned versions).
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$FIRESFU_ROOT"

CHECKOV_VERSION=3.3.30
KUBERNETES_VALIDATE_VERSION=1.37.0
# The GKE versions targeted: the REGULAR channel's (the cluster's release channel,
# terraform/variables.tf) and the oldest still supported.
K8S_VERSIONS=${K8S_VERSIONS:-"1.33.0 1.35.0"}
FIRESFU=${FIRESFU_BIN:-$BIN/firesfu}

work="$FIRESFU_ROOT/target/deploy"
venv="$work/venv"
rendered="$work/rendered"
mkdir -p "$work" "$rendered"
export TF_CLI_CONFIG_FILE=/dev/null   # terraform: no CLI configuration, no warning about it

failed=()
t_all=$(date +%s.%N)
step() {  # step NAME CMD...: runs CMD, prints its time, records a failure without stopping
  local name=$1 t0 rc=0
  shift
  echo "== deploy: $name"
  t0=$(date +%s.%N)
  "$@" || rc=$?
  printf '   (%s: %.1f s%s)\n' "$name" "$(echo "$(date +%s.%N) - $t0" | bc)" "$([ $rc -eq 0 ] || echo ", FAILED")"
  [ $rc -eq 0 ] || failed+=("$name")
}

tools() {
  local stamp="$venv/.versions" want="checkov==$CHECKOV_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing $want into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086
    "$venv/bin/pip" install --quiet --disable-pip-version-check $want
    echo "$want" >"$stamp"
  fi
  command -v kubectl >/dev/null || { echo "kubectl (with kustomize v5) is required" >&2; return 1; }
  command -v terraform >/dev/null || { echo "terraform is required (for terraform fmt)" >&2; return 1; }
  [ -x "$FIRESFU" ] || { echo "no firesfu binary at $FIRESFU: build it first (cargo build)" >&2; return 1; }
  echo "checkov $("$venv/bin/checkov" --version), kubernetes-validate $KUBERNETES_VALIDATE_VERSION," \
    "$(kubectl version --client 2>/dev/null | grep -i kustomize), $(terraform version | head -1)"
}

render() {
  local env
  for env in dev prod; do
    kubectl kustomize "k8s/overlays/$env" >"$rendered/$env.yaml"
    echo "k8s/overlays/$env: $(grep -c '^kind:' "$rendered/$env.yaml") objects -> target/deploy/rendered/$env.yaml"
  done
}

schemas() {
  local v env out rc=0
  for v in $K8S_VERSIONS; do
    for env in dev prod; do
      out=$("$venv/bin/kubernetes-validate" --strict -k "$v" "$rendered/$env.yaml" 2>&1) || rc=1
      if grep -q '^ERROR' <<<"$out" || [ $rc -ne 0 ]; then
        grep -v '^INFO' <<<"$out"
        rc=1
      fi
      echo "Kubernetes $v, $env: $(grep -c '^INFO.*passed' <<<"$out") objects valid (strict)," \
        "$(grep -c "Couldn't find schema" <<<"$out") custom resources left to the CRD check"
    done
  done
  "$venv/bin/python" tests/deploy/manifests.py crds "$rendered/dev.yaml" "$rendered/prod.yaml" || rc=1
  return $rc
}

checkov_all() {
  local rc=0 args=(--skip-download --compact --quiet)
  "$venv/bin/checkov" "${args[@]}" -d "$rendered" --framework kubernetes || rc=1
  "$venv/bin/checkov" "${args[@]}" -f Dockerfile --framework dockerfile || rc=1
  "$venv/bin/checkov" "${args[@]}" -d terraform --framework terraform || rc=1
  # Every skip carries its reason.
  local bad
  bad=$(grep -rnE 'checkov:skip=CKV[0-9A-Z_]+(:?[[:space:]]*$)|checkov\.io/skip[0-9]+: *CKV[0-9A-Z_]+ *$' \
    Dockerfile terraform k8s || true)
  if [ -n "$bad" ]; then
    echo "checkov skips without a reason:" >&2
    echo "$bad" >&2
    rc=1
  fi
  echo "skips (each with its reason):"
  grep -rhoE 'checkov:skip=CKV[0-9A-Z_]+|checkov\.io/skip[0-9]+: *CKV[0-9A-Z_]+' Dockerfile terraform k8s \
    | sed -E 's/.*(CKV[0-9A-Z_]+)/\1/' | sort | uniq -c | sed 's/^/  /'
  return $rc
}

step "tools" tools
if [ ${#failed[@]} -eq 0 ]; then
  step "render overlays" render
  step "terraform fmt" terraform fmt -check -recursive -diff terraform
  step "kubernetes schemas" schemas
  step "autopilot rules (prod and dev)" "$venv/bin/python" tests/deploy/manifests.py autopilot "$rendered/prod.yaml" "$rendered/dev.yaml"
  step "env vars vs flags" "$venv/bin/python" tests/deploy/manifests.py env "$FIRESFU" "$rendered/prod.yaml" "$rendered/dev.yaml"
  step "firestore indexes and TTL" python3 tests/deploy/indexes.py
  step "firebase.json" python3 -c '
import json, os
fb = json.load(open("firebase.json"))["firestore"]
for key in ("rules", "indexes"):
    assert os.path.isfile(fb[key]), fb[key]
print("firebase.json deploys", fb["rules"], "and", fb["indexes"], "to", fb.get("database", "(default)"))'
  step "checkov" checkov_all
fi
printf '== deploy: %s in %.0f s\n' \
  "$([ ${#failed[@]} -eq 0 ] && echo "all checks passed" || echo "FAILED: ${failed[*]}")" \
  "$(echo "$(date +%s.%N) - $t_all" | bc)"
[ ${#failed[@]} -eq 0 ]
