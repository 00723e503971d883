#!/usr/bin/env bash
# Runs every test of devops-stack on a fresh machine: installs and starts what the tests need
# (moto's AWS emulator, from PyPI, in a virtualenv under target/), then the checks and tests.
#
#   scripts/test.sh            # everything
#   scripts/test.sh -p devops-stack-aws   # extra arguments go to `cargo test`
#
# The live tiers run on the project's test environment when it is built (scripts/testenv.sh build,
# once per machine; see below and testenv/README.md), or against DEVOPS_STACK_TEST_KUBECONFIG.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/moto-venv
if [ ! -x "$venv/bin/moto_server" ]; then
  echo "==> installing moto[server] into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
fi

# A free port on loopback unless MOTO_PORT names one.
port="${MOTO_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
mkdir -p target
# AWS-managed IAM policies (AmazonEKSClusterPolicy...) exist only when moto loads them.
MOTO_IAM_LOAD_MANAGED_POLICIES=true "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" > target/moto.log 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/data.json', timeout=1)" 2>/dev/null; then
    break
  fi
  sleep 0.2
done
python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/data.json', timeout=2)" \
  || { echo "moto did not start; see target/moto.log"; exit 1; }
echo "==> moto serving on 127.0.0.1:$port"
export DEVOPS_STACK_TEST_AWS_ENDPOINT="http://127.0.0.1:$port"

# The live tiers run on the project's own test environment (scripts/testenv.sh; build it once with
# `scripts/testenv.sh build`, see testenv/README.md) when it is built on this machine:
# - the fast tier: cluster `ci-fast` (Kubernetes 1.35, kwok nodes, OIDC, no Argo CD), with the
#   Argo CD stand-in of the tests -> DEVOPS_STACK_TEST_*;
# - the real tier: cluster `ci-argocd`, the same plus the real Argo CD -> DEVOPS_STACK_TEST_ARGOCD_*;
# - the platform tier: cluster `ci-platform`, with the real Argo CD and kwok playing the load
#   balancers, where the whole platform is applied, re-applied and destroyed (its stack installs
#   Argo CD itself) -> DEVOPS_STACK_TEST_PLATFORM_*. With DEVOPS_STACK_TESTENV_CHART_SOURCES set, the
#   cluster also serves those upstream chart sources (DEVOPS_STACK_TEST_PLATFORM_UPSTREAM=1 uses them).
# They start from fresh data and stop when the tests end. DEVOPS_STACK_TEST_KUBECONFIG set by the
# caller wins for the fast tier; DEVOPS_STACK_LIVE=off runs neither. Without the environment, the
# older loopback stand-in (../shared/kube-test-cluster, Kubernetes 1.28, no Argo CD) serves the
# fast tier when its binaries are there. Nothing here builds Kubernetes or Argo CD.
testenv=scripts/testenv.sh
testenv_clusters="${XDG_CACHE_HOME:-$HOME/.cache}/devops-stack-testenv/clusters"
cleanup_clusters=()
stop_clusters() {
  local c
  for c in "${cleanup_clusters[@]}"; do bash "$testenv" stop --name "$c" >/dev/null 2>&1 || true; done
}
trap 'kill "$moto_pid" 2>/dev/null || true; stop_clusters' EXIT
fresh_cluster() { # name [--no-argocd]
  local name=$1; shift
  bash "$testenv" stop --name "$name" >/dev/null 2>&1 || true
  rm -rf "${testenv_clusters:?}/$name"
  cleanup_clusters+=("$name")
  bash "$testenv" start --name "$name" "$@" > "target/testenv-$name.log" 2>&1
}
testenv_built() { ! bash "$testenv" status --name ci-fast 2>&1 | grep -q '^not built'; }
if [ "${DEVOPS_STACK_LIVE:-auto}" != off ] && testenv_built; then
  echo "==> starting the test environment: cluster ci-fast (fast tier) and ci-argocd (real Argo CD)"
  if [ -z "${DEVOPS_STACK_TEST_KUBECONFIG:-}" ]; then
    fresh_cluster ci-fast --no-argocd || { echo "cluster ci-fast did not start (target/testenv-ci-fast.log)"; exit 1; }
    eval "$(bash "$testenv" env --name ci-fast)"
  fi
  fresh_cluster ci-argocd --load-balancers || { echo "cluster ci-argocd did not start (target/testenv-ci-argocd.log)"; exit 1; }
  eval "$(bash "$testenv" env --name ci-argocd --argocd)"
  fresh_cluster ci-platform --load-balancers || { echo "cluster ci-platform did not start (target/testenv-ci-platform.log)"; exit 1; }
  eval "$(bash "$testenv" env --name ci-platform --prefix PLATFORM)"
  # the fleet's two spokes: clusters of their own, without Argo CD (ci-argocd's is their hub)
  for spoke in a b; do
    fresh_cluster "ci-spoke-$spoke" --no-argocd --load-balancers || { echo "cluster ci-spoke-$spoke did not start (target/testenv-ci-spoke-$spoke.log)"; exit 1; }
    eval "$(bash "$testenv" env --name "ci-spoke-$spoke" --prefix "SPOKE_${spoke^^}")"
  done
  echo "==> fast tier: $DEVOPS_STACK_TEST_KUBECONFIG; real Argo CD tier: $DEVOPS_STACK_TEST_ARGOCD_KUBECONFIG (Argo CD at $DEVOPS_STACK_TEST_ARGOCD_SERVER); platform tier: $DEVOPS_STACK_TEST_PLATFORM_KUBECONFIG"
else
  echo "==> the project's test environment is not built on this machine (scripts/testenv.sh build):"
  echo "    the real Argo CD tiers are NOT run; their tests are reported ignored"
  kbin="${KBIN:-$HOME/.cache/kube-test/bin}"
  starter="$(cd .. && pwd)/shared/kube-test-cluster/start"
  if [ -z "${DEVOPS_STACK_TEST_KUBECONFIG:-}" ] && [ "${DEVOPS_STACK_LIVE:-auto}" != off ] \
     && [ -x "$kbin/kube-apiserver" ] && [ -x "$kbin/kube-controller-manager" ] \
     && command -v etcd >/dev/null && [ -f "$starter" ]; then
    echo "==> starting the older loopback kube-apiserver 1.28 stand-in for the fast tier"
    if KBIN="$kbin" bash "$starter" > target/kube-test-cluster.log 2>&1; then
      export DEVOPS_STACK_TEST_KUBECONFIG="$kbin/admin.kubeconfig"
      trap 'kill "$moto_pid" 2>/dev/null || true; bash "${starter%/start}/stop" >/dev/null 2>&1 || true' EXIT
    else
      echo "==> the loopback control plane did not start (see target/kube-test-cluster.log)"
    fi
  fi
fi
if [ -z "${DEVOPS_STACK_TEST_KUBECONFIG:-}" ]; then
  echo "==> DEVOPS_STACK_TEST_KUBECONFIG is not set: live Kubernetes tests are reported ignored"
else
  echo "==> live Kubernetes tests run against $DEVOPS_STACK_TEST_KUBECONFIG"
fi

echo "==> the main job: the offline plan of the full EKS platform (no AWS account)"
env -u AWS_ENDPOINT_URL cargo run --quiet --example eks_full > target/eks_full_plan.txt
grep -q 'Plan for stack `prod`: 15 modules' target/eks_full_plan.txt \
  || { echo "eks_full did not print the expected plan; see target/eks_full_plan.txt"; exit 1; }
grep -q '^digraph "prod"' target/eks_full_plan.txt || { echo "eks_full printed no graph"; exit 1; }
# Its JSON plan shows the team's group created in Cognito, the cluster trusting Cognito and the
# team's credentials scoped to its project.
env -u AWS_ENDPOINT_URL cargo run --quiet --example eks_full -- plan --json > target/eks_full_plan.json
python3 - target/eks_full_plan.json <<'PY' || { echo "eks_full's JSON plan lacks the team's identity or scoped credentials"; exit 1; }
import json, sys
plan = json.load(open(sys.argv[1]))
resources = [r for m in plan["modules"] for r in m["resources"]]
cloud = {(r.get("kind"), r.get("name")) for r in resources if r["type"] == "cloud"}
assert ("cognito:Group", "shop-deployers") in cloud, "no group shop-deployers"
assert ("eks:IdentityProviderConfig", "prod/devops-stack") in cloud, "no identity provider config"
secrets = [r for r in resources if r["type"] == "kubernetes" and r["object"]["kind"] == "Secret"
           and r["object"]["metadata"]["name"].startswith("team-shop-repo-")]
assert secrets and all(s["object"]["metadata"]["annotations"]["devops-stack.io/credentials-scope"] == "project:shop"
                       for s in secrets), "team credentials not scoped"
PY

# Which tests run. A test that needs something started is #[ignore = "needs ..."]: a plain
# `cargo test` reports it ignored, and one run with --include-ignored without what it needs
# fails, naming the variable. What a test target needs is in its name:
# - `*_argocd_live`: the test environment's real Argo CD tiers (DEVOPS_STACK_TEST_ARGOCD_*,
#   DEVOPS_STACK_TEST_PLATFORM_*, and the fleet's spokes DEVOPS_STACK_TEST_SPOKE_{A,B}_*);
# - any other `*_live`, and `fake_api` (whose one live test replays a scenario on the fake and on
#   the cluster): a Kubernetes cluster (DEVOPS_STACK_TEST_KUBECONFIG), and moto where they use it;
# - everything else: at most moto, which this script always starts.
# Each group runs with --include-ignored when what it needs was started, else its live tests are
# reported ignored. Never run here: `resume_child` (network.rs runs it in a child process) and
# `argocd_syncs_and_deletes_an_application` (k8s_live.rs; a real Argo CD with nodes and the
# internet on the fast tier's cluster, run by hand with DEVOPS_STACK_TEST_ARGOCD=1).
# With extra arguments, they go to one `cargo test` as given (live tests report themselves
# ignored unless `-- --include-ignored` is among them).
groups=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
tests = sorted({t["name"] for p in json.load(sys.stdin)["packages"] for t in p["targets"] if "test" in t["kind"]})
group = lambda n: "argocd" if n.endswith("_argocd_live") else "cluster" if n.endswith("_live") or n == "fake_api" else "moto"
for g in ("moto", "cluster", "argocd"):
    print(" ".join("--test " + n for n in tests if group(n) == g))
')
{ read -r moto_targets; read -r cluster_targets; read -r argocd_targets; } <<< "$groups"
cluster_up=; [ -n "${DEVOPS_STACK_TEST_KUBECONFIG:-}" ] && cluster_up=1
argocd_up=; [ -n "${DEVOPS_STACK_TEST_ARGOCD_KUBECONFIG:-}" ] && [ -n "${DEVOPS_STACK_TEST_PLATFORM_KUBECONFIG:-}" ] \
  && [ -n "${DEVOPS_STACK_TEST_SPOKE_A_KUBECONFIG:-}" ] && [ -n "${DEVOPS_STACK_TEST_SPOKE_B_KUBECONFIG:-}" ] && argocd_up=1
moto_args=(--include-ignored --skip resume_child)
cluster_args=()
if [ -n "$cluster_up" ]; then
  cluster_args=(--include-ignored --skip argocd_syncs_and_deletes_an_application)
  # The older loopback stand-in trusts no OIDC issuer: the one test of the API server's OIDC
  # authenticator needs the test environment's cluster (filtered out here, and said so).
  if [ -z "${DEVOPS_STACK_TEST_OIDC_ISSUER:-}" ]; then
    echo "==> the fast tier's cluster trusts no OIDC issuer: the OIDC authenticator's test is left out"
    cluster_args+=(--skip the_api_server_s_oidc_authenticator)
  fi
fi
argocd_args=(); [ -n "$argocd_up" ] && argocd_args=(--include-ignored)
echo "==> tests needing moto: run; needing a cluster: $([ -n "$cluster_up" ] && echo run || echo reported ignored); needing the real Argo CD tiers: $([ -n "$argocd_up" ] && echo run || echo reported ignored)"
# One group after another, every group even when one fails; the script fails if any did.
rc=0
run_groups() { # extra arguments for the Argo CD group (the platform test's --skip)
  # shellcheck disable=SC2086 # the target lists are words
  cargo test --no-fail-fast --workspace --lib --bins --examples $moto_targets -- "${moto_args[@]}" || rc=$?
  # shellcheck disable=SC2086
  cargo test --no-fail-fast --workspace $cluster_targets -- "${cluster_args[@]}" || rc=$?
  # shellcheck disable=SC2086
  cargo test --no-fail-fast --workspace $argocd_targets -- "${argocd_args[@]}" "$@" || rc=$?
}

# The platform tier's one test mostly waits on Argo CD (a quiet minute included): with no extra
# arguments, it runs beside the rest, from its built binary, and its result counts like theirs.
platform_test=the_platform_is_delivered_by_a_real_argo_cd_handed_over_reapplied_quietly_and_destroyed
if [ $# -gt 0 ]; then
  cargo test --workspace --lib --bins --tests --examples "$@" || rc=$?
elif [ -n "$argocd_up" ]; then
  cargo test --workspace --lib --bins --tests --examples --no-run
  platform_bin=$(cargo test -p devops-stack-modules --test platform_argocd_live --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][-1])')
  echo "==> platform tier: $platform_bin, beside the other tests (target/platform-tier.log)"
  "$platform_bin" --include-ignored --nocapture > target/platform-tier.log 2>&1 &
  platform_pid=$!
  run_groups --skip "$platform_test"
  platform_rc=0; wait "$platform_pid" || platform_rc=$?
  echo "==> platform tier:"; grep -E '^(charts|bootstrap|platform|no-op|refused|SUMMARY|test result)' target/platform-tier.log | cut -c1-200 || true
  if [ "$platform_rc" != 0 ]; then tail -50 target/platform-tier.log; echo "the platform tier failed (target/platform-tier.log)"; exit 1; fi
else
  run_groups
fi
[ "$rc" = 0 ] || exit "$rc"
# Doc-tests: an `ignore` block there is a fragment that does not compile alone, never a live test.
cargo test --workspace --doc "$@"
