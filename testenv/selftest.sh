#!/usr/bin/env bash
# End-to-end proof of the live test environment (scripts/testenv.sh), with the real Argo CD:
# on its own cluster (default "selftest", beside "main" when that one runs), from a fresh data dir:
#   1. kwok: a Deployment becomes Available, a StatefulSet ready, a Job complete;
#   2. OIDC: a token from the loopback issuer authenticates to the API server as oidc:<sub>
#      with oidc:-prefixed groups (kubectl auth whoami);
#   3. Argo CD: its CRDs (from the pinned argo-cd module) and a minimal argocd-cm / argocd-secret /
#      argocd-rbac-cm, then an Application from the loopback git server (Deployment + Service) and
#      one from the loopback Helm chart repository, each Synced and Healthy as Argo CD reports it;
#   4. SCM API: an opened pull request is listed, and an ApplicationSet with the pull-request
#      generator (github, api = the loopback SCM API) makes an Application for it, removed when
#      the pull request closes;
#   5. deleting the git Application: Argo CD's resources finalizer removes its Deployment.
# The cluster is stopped at the end (KEEP=1 keeps it running). Prints timings.
#
#   scripts/testenv.sh selftest [--name NAME]     # or: testenv/selftest.sh
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
T="$REPO/scripts/testenv.sh"
NAME=selftest
while [ $# -gt 0 ]; do
  case $1 in
    --name) NAME=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ "$NAME" != main ] || { echo "selftest refuses to use (and wipe) cluster main" >&2; exit 2; }
ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/devops-stack-testenv"
CL="$ROOT/clusters/$NAME"
SHARE="$ROOT/share"
WORK=$(mktemp -d)

T0=$(date +%s.%N)
STEP_T=$T0
step() { echo; echo "=== $*"; STEP_T=$(date +%s.%N); }
took() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
done_step() { echo "--- ok in $(took "$STEP_T") s: $*"; TIMINGS+=("$(printf '%6s s  %s' "$(took "$STEP_T")" "$*")"); }
TIMINGS=()
FAILED=1

finish() {
  local rc=$?
  if [ "$FAILED" = 1 ]; then
    echo; echo "SELFTEST FAILED (exit $rc). Last log lines of cluster $NAME ($CL/logs):"
    local f; for f in "$CL"/logs/*.log; do [ -f "$f" ] || continue; echo "--- $f"; tail -n 8 "$f"; done
    if [ -n "${KC_READY:-}" ]; then
      echo "--- applications:"; kc get applications.argoproj.io -A -o wide 2>/dev/null || true
    fi
  fi
  if [ "${KEEP:-0}" = 1 ]; then echo "KEEP=1: cluster $NAME left running"; else "$T" stop --name "$NAME" || true; fi
  rm -rf "$WORK"
  echo; echo "timings:"; local l; for l in "${TIMINGS[@]}"; do echo "  $l"; done
  echo "total: $(took "$T0") s"
  [ "$FAILED" = 0 ] && echo "SELFTEST PASSED"
}
trap finish EXIT

# Polls a command until it succeeds, at most $1 seconds.
wait_for() { # seconds what command...
  local secs=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "timed out after ${secs}s waiting for: $what" >&2; return 1; fi
    sleep 1
  done
}

# ------------------------------------------------------------------ cluster
step "start cluster $NAME from a fresh data dir (with Argo CD processes)"
"$T" stop --name "$NAME" >/dev/null
rm -rf "$CL"
"$T" start --name "$NAME"
eval "$("$T" env --name "$NAME")"
kc() { "$DEVOPS_STACK_TEST_KUBECTL" --kubeconfig "$DEVOPS_STACK_TEST_KUBECONFIG" "$@"; }
KC_READY=1
HELM=$DEVOPS_STACK_TEST_HELM
done_step "start"

if [ -s "$ROOT/clusters/main/env" ] && "$T" status --name main >/dev/null 2>&1; then
  echo "cluster main is running beside $NAME"
  MAIN_RUNNING=1
else MAIN_RUNNING=0; fi

# ------------------------------------------------------------------ kwok workloads
step "kwok: Deployment Available, StatefulSet ready, Job complete"
kc create namespace st-workloads >/dev/null
kc apply -n st-workloads -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: registry.invalid/web:1}]}
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {clusterIP: None, selector: {app: db}, ports: [{port: 5432}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: registry.invalid/db:1}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{name: once, image: registry.invalid/once:1}]
EOF
kc -n st-workloads wait --for=condition=Available deployment/web --timeout=60s
kc -n st-workloads rollout status statefulset/db --timeout=60s
kc -n st-workloads wait --for=condition=Complete job/once --timeout=60s
kc -n st-workloads get pods -o wide
done_step "kwok workloads"

# ------------------------------------------------------------------ OIDC
step "OIDC: a token from $DEVOPS_STACK_TEST_OIDC_ISSUER authenticates to the API server"
curl -sf --cacert "$DEVOPS_STACK_TEST_OIDC_CA" "$DEVOPS_STACK_TEST_OIDC_ISSUER/.well-known/openid-configuration" | jq -c '{issuer, jwks_uri}'
TOKEN=$(curl -sf --cacert "$DEVOPS_STACK_TEST_OIDC_CA" -X POST -H 'Content-Type: application/json' \
  -d '{"sub": "alice", "groups": ["platform-admins", "devs"], "aud": "kubernetes", "ttl_seconds": 600}' \
  "$DEVOPS_STACK_TEST_OIDC_ISSUER/token" | jq -r .id_token)
SERVER=$(kc config view --minify -o jsonpath='{.clusters[0].cluster.server}')
WHOAMI=$("$DEVOPS_STACK_TEST_KUBECTL" --kubeconfig /dev/null --server "$SERVER" \
  --certificate-authority "$DEVOPS_STACK_TEST_OIDC_CA" --token "$TOKEN" auth whoami -o json)
echo "$WHOAMI" | jq -c .status.userInfo
[ "$(echo "$WHOAMI" | jq -r .status.userInfo.username)" = "oidc:alice" ] || { echo "username is not oidc:alice"; exit 1; }
echo "$WHOAMI" | jq -e '.status.userInfo.groups | index("oidc:platform-admins") and index("oidc:devs") and index("system:authenticated")' >/dev/null \
  || { echo "groups lack oidc:platform-admins / oidc:devs"; exit 1; }
# A token for another audience is refused.
BAD=$(curl -sf --cacert "$DEVOPS_STACK_TEST_OIDC_CA" -X POST -d '{"sub": "mallory", "aud": "other"}' \
  "$DEVOPS_STACK_TEST_OIDC_ISSUER/token" | jq -r .id_token)
if "$DEVOPS_STACK_TEST_KUBECTL" --kubeconfig /dev/null --server "$SERVER" --certificate-authority "$DEVOPS_STACK_TEST_OIDC_CA" \
  --token "$BAD" auth whoami >/dev/null 2>&1; then echo "a token for audience 'other' was accepted"; exit 1; fi
done_step "OIDC"

# ------------------------------------------------------------------ Argo CD's minimal install
step "Argo CD: CRDs from the pinned argo-cd module, namespace argocd, argocd-cm/-secret/-rbac-cm"
kc apply --server-side --force-conflicts -f "$SHARE/argocd-crds/" >/dev/null
established() { [ "$(kc get crd "$1" -o jsonpath='{.status.conditions[?(@.type=="Established")].status}')" = True ]; }
for crd in applications applicationsets appprojects; do wait_for 30 "CRD $crd.argoproj.io Established" established "$crd.argoproj.io"; done
kc create namespace argocd >/dev/null
SECRETKEY=$(head -c 32 /dev/urandom | base64 -w0)
kc apply -n argocd -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-cm, labels: {app.kubernetes.io/name: argocd-cm, app.kubernetes.io/part-of: argocd}}
data: {timeout.reconciliation: 30s}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-rbac-cm, labels: {app.kubernetes.io/name: argocd-rbac-cm, app.kubernetes.io/part-of: argocd}}
---
apiVersion: v1
kind: Secret
metadata: {name: argocd-secret, labels: {app.kubernetes.io/name: argocd-secret, app.kubernetes.io/part-of: argocd}}
type: Opaque
stringData: {server.secretkey: "$SECRETKEY"}
EOF
ARGOCD_HTTP="http://$DEVOPS_STACK_TEST_ARGOCD_SERVER"
wait_for 90 "argocd-server /healthz?full=true ($CL/logs/argocd-server.log)" curl -sf "$ARGOCD_HTTP/healthz?full=true"
wait_for 60 "AppProject default (created by argocd-server)" kc -n argocd get appproject default
curl -sf "$ARGOCD_HTTP/api/version" | jq -c '{Version, HelmVersion, KustomizeVersion}' || true
done_step "Argo CD up"

# ------------------------------------------------------------------ git Application
step "git: push a Deployment + Service to $DEVOPS_STACK_TEST_GIT_URL, Application synced and healthy"
git init -q --bare -b main "$DEVOPS_STACK_TEST_GIT_ROOT/selftest.git"
git init -q -b main "$WORK/src"
mkdir -p "$WORK/src/manifests"
cat > "$WORK/src/manifests/app.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello}
spec:
  replicas: 2
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec: {containers: [{name: hello, image: registry.invalid/hello:1, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: hello}
spec: {selector: {app: hello}, ports: [{port: 80, targetPort: 8080}]}
EOF
git -C "$WORK/src" add -A
git -C "$WORK/src" -c user.name=selftest -c user.email=selftest@devops-stack.test commit -q -m "hello"
git -C "$WORK/src" push -q "$DEVOPS_STACK_TEST_GIT_URL/selftest.git" main
git ls-remote "$DEVOPS_STACK_TEST_GIT_URL/selftest.git" | head -2
HEAD_SHA=$(git -C "$WORK/src" rev-parse HEAD)

app() { # name namespace source-json
  kc apply -f - >/dev/null <<EOF
{"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
 "metadata": {"name": "$1", "namespace": "argocd", "finalizers": ["resources-finalizer.argocd.argoproj.io"]},
 "spec": {"project": "default", "source": $3,
   "destination": {"server": "https://kubernetes.default.svc", "namespace": "$2"},
   "syncPolicy": {"automated": {"prune": true, "selfHeal": true}, "syncOptions": ["CreateNamespace=true"]}}}
EOF
}
synced_healthy() { # app
  local s; s=$(kc -n argocd get application "$1" -o jsonpath='{.status.sync.status}/{.status.health.status}')
  [ "$s" = "Synced/Healthy" ]
}
show_app() { kc -n argocd get application "$1" -o jsonpath='{.metadata.name}: sync={.status.sync.status} health={.status.health.status} revision={.status.sync.revision} conditions={.status.conditions}{"\n"}'; }

app selftest-git st-git "{\"repoURL\": \"$DEVOPS_STACK_TEST_GIT_URL/selftest.git\", \"path\": \"manifests\", \"targetRevision\": \"main\"}"
wait_for 180 "Application selftest-git Synced/Healthy" synced_healthy selftest-git || { show_app selftest-git; exit 1; }
show_app selftest-git
[ "$(kc -n argocd get application selftest-git -o jsonpath='{.status.sync.revision}')" = "$HEAD_SHA" ] \
  || { echo "synced revision is not the pushed commit $HEAD_SHA"; exit 1; }
kc -n st-git get deployment hello -o jsonpath='deployment hello: {.status.availableReplicas}/{.spec.replicas} available{"\n"}'
done_step "git Application Synced/Healthy"

# ------------------------------------------------------------------ Helm Application
step "helm: package a chart into $DEVOPS_STACK_TEST_HELM_REPO, Application synced and healthy"
mkdir -p "$WORK/chart/selftest-chart/templates"
cat > "$WORK/chart/selftest-chart/Chart.yaml" <<'EOF'
apiVersion: v2
name: selftest-chart
version: 0.1.0
appVersion: "1.0"
EOF
printf 'replicas: 1\nmessage: hello\n' > "$WORK/chart/selftest-chart/values.yaml"
cat > "$WORK/chart/selftest-chart/templates/all.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata: {name: {{ .Release.Name }}-config}
data: {message: {{ .Values.message | quote }}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: {{ .Release.Name }}}
spec:
  replicas: {{ .Values.replicas }}
  selector: {matchLabels: {app: {{ .Release.Name }}}}
  template:
    metadata: {labels: {app: {{ .Release.Name }}}}
    spec: {containers: [{name: app, image: registry.invalid/chart:1}]}
EOF
"$HELM" package -d "$DEVOPS_STACK_TEST_HELM_ROOT" "$WORK/chart/selftest-chart" >/dev/null
"$HELM" repo index "$DEVOPS_STACK_TEST_HELM_ROOT" --url "$DEVOPS_STACK_TEST_HELM_REPO"
curl -sf "$DEVOPS_STACK_TEST_HELM_REPO/index.yaml" | grep -q 'selftest-chart' || { echo "index.yaml lacks the chart"; exit 1; }
app selftest-helm st-helm "{\"repoURL\": \"$DEVOPS_STACK_TEST_HELM_REPO\", \"chart\": \"selftest-chart\", \"targetRevision\": \"0.1.0\", \"helm\": {\"valuesObject\": {\"replicas\": 2, \"message\": \"from-argocd\"}}}"
wait_for 180 "Application selftest-helm Synced/Healthy" synced_healthy selftest-helm || { show_app selftest-helm; exit 1; }
show_app selftest-helm
[ "$(kc -n st-helm get configmap selftest-helm-config -o jsonpath='{.data.message}')" = from-argocd ] \
  || { echo "the chart's values were not applied"; exit 1; }
done_step "Helm Application Synced/Healthy"

# ------------------------------------------------------------------ SCM API + ApplicationSet
step "SCM API: an opened pull request is listed, the ApplicationSet pull-request generator makes its Application"
SCM=$DEVOPS_STACK_TEST_SCM_API
curl -sf -X POST -d "{\"number\": 7, \"branch\": \"feature-x\", \"sha\": \"$HEAD_SHA\", \"labels\": [\"preview\"]}" \
  "$SCM/_test/repos/acme/selftest/pulls" >/dev/null
curl -sf "$SCM/api/v3/repos/acme/selftest/pulls?state=open&per_page=100" \
  | jq -e '.[] | select(.number == 7 and .head.ref == "feature-x" and .labels[0].name == "preview")' >/dev/null \
  || { echo "the SCM API does not list pull request 7"; exit 1; }
kc apply -f - >/dev/null <<EOF
{"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet",
 "metadata": {"name": "selftest-previews", "namespace": "argocd"},
 "spec": {"goTemplate": true,
   "generators": [{"pullRequest": {"github": {"api": "$SCM", "owner": "acme", "repo": "selftest", "labels": ["preview"]}, "requeueAfterSeconds": 5}}],
   "template": {"metadata": {"name": "preview-{{.number}}"},
     "spec": {"project": "default",
       "source": {"repoURL": "$DEVOPS_STACK_TEST_GIT_URL/selftest.git", "path": "manifests", "targetRevision": "{{.head_sha}}"},
       "destination": {"server": "https://kubernetes.default.svc", "namespace": "preview-{{.number}}"}}}}}
EOF
wait_for 90 "Application preview-7 from the ApplicationSet ($CL/logs/argocd-applicationset-controller.log)" \
  kc -n argocd get application preview-7
echo "ApplicationSet made: $(kc -n argocd get application preview-7 -o jsonpath='{.metadata.name} (targetRevision {.spec.source.targetRevision})')"
curl -sf -X DELETE "$SCM/_test/repos/acme/selftest/pulls/7"
gone() { ! kc -n argocd get application "$1" >/dev/null 2>&1; }
wait_for 90 "Application preview-7 removed after the pull request closed" gone preview-7
curl -sf "$SCM/_test/stats" | jq -c .
kc -n argocd delete applicationset selftest-previews >/dev/null
done_step "SCM API and ApplicationSet pull-request generator"

# ------------------------------------------------------------------ deletion through the finalizer
step "delete Application selftest-git: the resources finalizer removes its Deployment"
kc -n argocd delete application selftest-git --wait=false >/dev/null
wait_for 120 "Application selftest-git gone" gone selftest-git
no_deployment() { ! kc -n st-git get deployment hello >/dev/null 2>&1; }
wait_for 60 "Deployment st-git/hello deleted" no_deployment
echo "Application selftest-git and Deployment st-git/hello are gone"
kc -n argocd delete application selftest-helm --wait=true --timeout=120s >/dev/null
done_step "finalizer cascade"

# ------------------------------------------------------------------ coexistence, Argo CD restarts
step "processes"
"$T" status --name "$NAME" || true
if [ "$MAIN_RUNNING" = 1 ]; then
  if "$T" status --name main >/dev/null; then echo "cluster main still running and ready beside $NAME"
  else echo "cluster main went down during the selftest"; exit 1; fi
fi
done_step "status"
FAILED=0
