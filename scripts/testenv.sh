#!/usr/bin/env bash
# The live test environment of devops-stack: a real Kubernetes 1.35 control plane and a real
# Argo CD on loopback, several clusters side by side, everything built from Go modules pinned in
# testenv/tools/*/go.mod (fetched through the Go module proxy: Kubernetes, etcd, kwok, Argo CD,
# Helm, kustomize) plus Debian's redis and git.
#
#   scripts/testenv.sh build                          # install Debian packages, build the binaries
#   scripts/testenv.sh start [--name N] [--no-argocd] [--load-balancers]
#                                                     # start cluster N (default main); idempotent;
#                                                     # --load-balancers: kwok also gives LoadBalancer
#                                                     # Services and Ingresses an address
#   scripts/testenv.sh stop [--name N | --all]
#   scripts/testenv.sh status [--name N]              # non-zero when not built or not running
#   scripts/testenv.sh env [--name N]                 # export lines for the Rust tests
#   scripts/testenv.sh selftest                       # end-to-end proof on cluster "selftest"
#   eval "$(scripts/testenv.sh env)"
#
# Per cluster (data, PKI, logs, pids under $ROOT/clusters/NAME): etcd, kube-apiserver
# (RBAC, service-account tokens, OIDC through --authentication-config), kube-controller-manager,
# kube-scheduler, kwok (fake nodes: pods are scheduled for real and kwok makes them Running and
# Ready), the project's own loopback servers (testenv/servers: OIDC issuer, git smart HTTP,
# Helm chart repository, GitHub-like pull-request API), and unless --no-argocd, redis and Argo CD's
# application-controller, repo-server, applicationset-controller and server as local processes
# (ARGOCD_FAKE_IN_CLUSTER=true), each under a supervisor loop that restarts it when it exits:
# they wait for the stack's bootstrap to install Argo CD's chart (namespace argocd, CRDs, argocd-cm...).
#
# Ports: cluster index i (main is 0, others get the lowest free index, kept in the cluster dir),
# base = 17000 + 100*i: +0 kube-apiserver, +1/+2 etcd client/peer, +3 kube-controller-manager,
# +4 kube-scheduler, +5 kwok, +10 servers (HTTP), +11 OIDC issuer (HTTPS), +20 redis,
# +21/+22 argocd-server/metrics, +23/+24 argocd-repo-server/metrics, +25 application-controller
# metrics, +26/+27/+28 applicationset-controller metrics/probe/webhook. All bind 127.0.0.1, except
# the application-controller's metrics, which upstream hard-codes to 0.0.0.0 (controller/appcontroller.go).
#
# Env: XDG_CACHE_HOME (root is ${XDG_CACHE_HOME:-$HOME/.cache}/devops-stack-testenv),
#      TESTENV_START_TIMEOUT (seconds for start's readiness, default 90).
# See testenv/README.md.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$REPO/scripts/testenv.sh"
TOOLS="$REPO/testenv/tools"
ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/devops-stack-testenv"
BIN="$ROOT/bin"
SHARE="$ROOT/share"
CLUSTERS="$ROOT/clusters"
# Argo CD's repo-server gets this directory first on its PATH: helm and kustomize as Argo CD's
# image ships them (Argo CD 3.4 runs Helm v3, 3.19.4: hack/tool-versions.sh; built as helm3).
ARGOCD_PATH_DIR="$BIN/argocd-path"
# etcd-server is installed as asked of the environment, but clusters run the pinned etcd 3.6 of
# testenv/tools/etcd (why: its go.mod).
DEBIAN_PACKAGES=(etcd-server redis-server git openssl curl ca-certificates iproute2 jq)

die() { echo "testenv: $*" >&2; exit 1; }
say() { echo "testenv: $*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Version of module $2 required by the tools module $1 (its go.mod).
modver() { grep -oE "^[[:space:]]*(require[[:space:]]+)?$2 v[^ ]+" "$TOOLS/$1/go.mod" | awk '{print $NF}' | head -1; }

# ============================================================================ build

# Components: name, tools module dir, ldflags, packages (-> $BIN/<last path element>, or -o).
component_ldflags() {
  case $1 in
    kubernetes)
      local v; v=$(modver kubernetes k8s.io/kubernetes); local mm=${v#v}; local major=${mm%%.*}; local rest=${mm#*.}; local minor=${rest%%.*}
      echo "-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$v -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.buildDate=2026-01-01T00:00:00Z" ;;
    argocd)
      local v; v=$(modver argocd github.com/argoproj/argo-cd/v3)
      echo "-s -w -X github.com/argoproj/argo-cd/v3/common.version=${v#v} -X github.com/argoproj/argo-cd/v3/common.gitTag=$v" ;;
    helm)
      local v; v=$(modver helm helm.sh/helm/v4)
      echo "-s -w -X helm.sh/helm/v4/internal/version.version=$v" ;;
    helm3)
      # the default Kubernetes version of `helm template`, from client-go, as Helm's Makefile sets it
      local v c; v=$(modver helm3 helm.sh/helm/v3); c=$(modver helm3 k8s.io/client-go); c=${c#v0.}; c=${c%%.*}
      echo "-s -w -X helm.sh/helm/v3/internal/version.version=$v -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$c -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$c" ;;
    *) echo "-s -w" ;;
  esac
}
component_packages() {
  case $1 in
    kubernetes) echo "k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl" ;;
    argocd) echo "github.com/argoproj/argo-cd/v3/cmd" ;;
    kwok) echo "sigs.k8s.io/kwok/cmd/kwok" ;;
    helm) echo "helm.sh/helm/v4/cmd/helm" ;;
    helm3) echo "helm.sh/helm/v3/cmd/helm" ;;
    kustomize) echo "sigs.k8s.io/kustomize/kustomize/v5" ;;
    etcd) echo "go.etcd.io/etcd/server/v3" ;;
    servers) echo "." ;;
  esac
}
component_outputs() {
  case $1 in
    kubernetes) echo "kube-apiserver kube-controller-manager kube-scheduler kubectl" ;;
    argocd) echo "argocd" ;;
    kwok) echo "kwok" ;;
    helm) echo "helm" ;;
    helm3) echo "helm3" ;;
    kustomize) echo "kustomize" ;;
    etcd) echo "etcd" ;;
    servers) echo "devops-stack-testenv-servers" ;;
  esac
}
component_dir() { if [ "$1" = servers ]; then echo "$REPO/testenv/servers"; else echo "$TOOLS/$1"; fi; }
COMPONENTS=(etcd kubernetes kwok argocd helm helm3 kustomize servers)

stamp_of() { # component
  local c=$1 d; d=$(component_dir "$c")
  {
    cat "$d/go.mod"; [ -f "$d/go.sum" ] && cat "$d/go.sum"
    [ "$c" = servers ] && cat "$d"/*.go
    echo "ldflags=$(component_ldflags "$c")"; echo "pkgs=$(component_packages "$c")"; go env GOVERSION
  } | sha256sum | cut -d' ' -f1
}

build_component() { # component
  local c=$1 d ldflags pkgs outs stamp t0
  d=$(component_dir "$c"); ldflags=$(component_ldflags "$c"); pkgs=$(component_packages "$c"); outs=$(component_outputs "$c")
  stamp=$(stamp_of "$c")
  local missing=0 o
  for o in $outs; do [ -x "$BIN/$o" ] || missing=1; done
  if [ "$missing" = 0 ] && [ "$(cat "$BIN/.stamps/$c" 2>/dev/null)" = "$stamp" ]; then
    say "build: $c is up to date ($outs)"; return 0
  fi
  t0=$(now)
  say "build: $c ($pkgs) ..."
  local out="$BIN/"; [ "$c" = argocd ] && out="$BIN/argocd"; [ "$c" = kustomize ] && out="$BIN/kustomize"
  [ "$c" = etcd ] && out="$BIN/etcd"
  [ "$c" = helm3 ] && out="$BIN/helm3"
  [ "$c" = servers ] && out="$BIN/devops-stack-testenv-servers"
  # shellcheck disable=SC2086 # pkgs is a word list
  (cd "$d" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out" $pkgs) \
    || die "build of $c failed (in $d)"
  echo "$stamp" > "$BIN/.stamps/$c"
  say "build: $c done in $(since "$t0") s"
}

# Files taken from the pinned modules' sources: kwok's default stages, Argo CD's CRDs.
build_share() {
  local kd ad
  mkdir -p "$SHARE/argocd-crds"
  kd=$(cd "$TOOLS/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok) || die "kwok module source not found"
  { for f in "$kd"/kustomize/stage/node/fast/node-initialize.yaml \
             "$kd"/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
             "$kd"/kustomize/stage/pod/fast/pod-ready.yaml "$kd"/kustomize/stage/pod/fast/pod-complete.yaml \
             "$kd"/kustomize/stage/pod/fast/pod-delete.yaml \
             "$kd"/kustomize/stage/volume/fast/pvc-provision.yaml "$kd"/kustomize/stage/volume/fast/pv-bind.yaml \
             "$kd"/kustomize/stage/volume/fast/pv-delete.yaml "$kd"/kustomize/stage/volume/fast/pvc-delete.yaml; do
       echo "---"; cat "$f"; done; } > "$SHARE/kwok-stages.yaml"
  ad=$(cd "$TOOLS/argocd" && go list -m -f '{{.Dir}}' github.com/argoproj/argo-cd/v3) || die "argo-cd module source not found"
  rm -f "$SHARE"/argocd-crds/*.yaml
  for f in application-crd.yaml applicationset-crd.yaml appproject-crd.yaml; do
    install -m 0644 "$ad/manifests/crds/$f" "$SHARE/argocd-crds/$f"
  done
  # What Argo CD's image puts in /usr/local/bin beside its binary: helm, kustomize, argocd (git's
  # GIT_ASKPASS is "argocd"), and the repo-server's git-verify-wrapper.sh / gpg-wrapper.sh.
  mkdir -p "$ARGOCD_PATH_DIR"
  ln -sfn ../helm3 "$ARGOCD_PATH_DIR/helm"
  ln -sfn ../kustomize "$ARGOCD_PATH_DIR/kustomize"
  ln -sfn ../argocd "$ARGOCD_PATH_DIR/argocd"
  for f in git-verify-wrapper.sh gpg-wrapper.sh; do install -m 0755 "$ad/hack/$f" "$ARGOCD_PATH_DIR/$f"; done
}

cmd_build() {
  local t0; t0=$(now)
  local missing=() p
  for p in "${DEBIAN_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    say "build: installing Debian packages: ${missing[*]}"
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
  fi
  command -v go >/dev/null || die "go is not on PATH"
  mkdir -p "$BIN/.stamps"
  local only=("$@"); [ "${#only[@]}" -gt 0 ] || only=("${COMPONENTS[@]}")
  local c; for c in "${only[@]}"; do build_component "$c"; done
  build_share
  say "build: done in $(since "$t0") s; binaries in $BIN"
}

# ============================================================================ cluster layout

NAME=main
parse_name() { # args...; sets NAME, ALL, NO_ARGOCD, LOAD_BALANCERS
  ALL=0; NO_ARGOCD=0; LOAD_BALANCERS=0
  while [ $# -gt 0 ]; do
    case $1 in
      --name) [ $# -ge 2 ] || die "--name needs a value"; NAME=$2; shift 2 ;;
      --name=*) NAME=${1#--name=}; shift ;;
      --all) ALL=1; shift ;;
      --no-argocd) NO_ARGOCD=1; shift ;;
      --load-balancers) LOAD_BALANCERS=1; shift ;;
      *) die "unknown argument: $1" ;;
    esac
  done
  [[ $NAME =~ ^[a-z0-9][a-z0-9-]{0,30}$ ]] || die "cluster name must be lower-case letters, digits and dashes: $NAME"
}

cluster_vars() { # sets CL and every port from the cluster's index
  CL="$CLUSTERS/$NAME"; PKI="$CL/pki"; LOGS="$CL/logs"; RUN="$CL/run"
  local idx
  if [ -s "$CL/index" ]; then idx=$(cat "$CL/index")
  elif [ "$NAME" = main ]; then idx=0
  else
    local used=" " f
    for f in "$CLUSTERS"/*/index; do [ -s "$f" ] && used+="$(cat "$f") "; done
    used+="0 "   # reserved for main
    idx=1; while [[ $used == *" $idx "* ]]; do idx=$((idx + 1)); done
  fi
  [ "$idx" -le 49 ] || die "too many clusters (index $idx)"
  INDEX=$idx
  local b=$((17000 + 100 * idx))
  P_API=$b; P_ETCD=$((b + 1)); P_ETCD_PEER=$((b + 2)); P_KCM=$((b + 3)); P_SCHED=$((b + 4)); P_KWOK=$((b + 5))
  P_HTTP=$((b + 10)); P_OIDC=$((b + 11)); P_REDIS=$((b + 20))
  P_ARGOCD=$((b + 21)); P_ARGOCD_METRICS=$((b + 22)); P_REPO=$((b + 23)); P_REPO_METRICS=$((b + 24))
  P_CTRL_METRICS=$((b + 25)); P_APPSET_METRICS=$((b + 26)); P_APPSET_PROBE=$((b + 27)); P_APPSET_WEBHOOK=$((b + 28))
  KUBECONFIG_FILE="$CL/kubeconfig"
}

# Component -> port shown by status.
port_of() {
  case $1 in
    etcd) echo $P_ETCD ;; kube-apiserver) echo $P_API ;; kube-controller-manager) echo $P_KCM ;;
    kube-scheduler) echo $P_SCHED ;; kwok) echo $P_KWOK ;; servers) echo "$P_HTTP,$P_OIDC" ;;
    redis) echo $P_REDIS ;; argocd-server) echo $P_ARGOCD ;; argocd-repo-server) echo $P_REPO ;;
    argocd-application-controller) echo $P_CTRL_METRICS ;; argocd-applicationset-controller) echo $P_APPSET_WEBHOOK ;;
  esac
}

# A pid file's process is alive and still ours (its command line names this cluster's directory;
# redis retitles itself "redis-server 127.0.0.1:PORT", so its marker is its port).
alive() { # component
  local pid; [ -s "$RUN/$1.pid" ] || return 1
  pid=$(cat "$RUN/$1.pid"); kill -0 "$pid" 2>/dev/null || return 1
  local marker="$CL"; [ "$1" = redis ] && marker="$P_REDIS"
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker"
}
port_busy() { ss -Hltn "sport = :$1" | grep -q .; }

# Starts a command in its own session (pid = process group id) with its output in logs/<name>.log.
launch() { # name cmd...
  local n=$1; shift
  setsid "$@" >> "$LOGS/$n.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$n.pid"
}

# Polls a command until it succeeds, at most $1 seconds; fails at once when component $4 (or "-")
# has exited.
wait_until() { # seconds description logfile component command...
  local secs=$1 what=$2 log=$3 comp=$4; shift 4
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ "$comp" != - ] && ! alive "$comp"; then die "$comp of cluster $NAME exited; see $log"; fi
    [ "$(date +%s)" -lt "$deadline" ] || die "$what not ready after ${secs}s; see $log"
    sleep 0.25
  done
}

# ============================================================================ PKI

new_ca() { # name cn
  [ -s "$PKI/$1.crt" ] && return 0
  openssl genrsa -out "$PKI/$1.key" 2048 2>/dev/null
  openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/$1.crt" 2>/dev/null
}
sign() { # name subject san eku [ca]
  local n=$1 subj=$2 san=$3 eku=$4 ca=${5:-ca}
  [ -s "$PKI/$n.crt" ] && return 0
  openssl genrsa -out "$PKI/$n.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$n.key" -subj "$subj" -out "$PKI/$n.csr" 2>/dev/null
  { echo "basicConstraints=critical,CA:FALSE"; echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"; if [ -n "$san" ]; then echo "subjectAltName=$san"; fi; } > "$PKI/$n.ext"
  openssl x509 -req -in "$PKI/$n.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/$n.ext" -out "$PKI/$n.crt" 2>/dev/null
  rm -f "$PKI/$n.csr" "$PKI/$n.ext"
}
kubeconfig() { # out user certname namespace
  cat > "$1.tmp" <<KC
apiVersion: v1
kind: Config
clusters:
- name: $NAME
  cluster:
    server: https://127.0.0.1:$P_API
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$3.crt")
    client-key-data: $(base64 -w0 "$PKI/$3.key")
contexts:
- name: $2@$NAME
  context: {cluster: $NAME, user: $2, namespace: $4}
current-context: $2@$NAME
KC
  chmod 600 "$1.tmp"; mv "$1.tmp" "$1"
}
make_pki() {
  mkdir -p "$PKI"; chmod 700 "$PKI"
  new_ca ca "devops-stack-testenv-$NAME-ca"
  new_ca front-proxy-ca "devops-stack-testenv-$NAME-front-proxy-ca"
  sign apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" serverAuth
  sign oidc "/CN=devops-stack-testenv-oidc" "IP:127.0.0.1,DNS:localhost" serverAuth
  sign admin "/O=system:masters/CN=kubernetes-admin" "" clientAuth
  sign controller-manager "/CN=system:kube-controller-manager" "" clientAuth
  sign scheduler "/CN=system:kube-scheduler" "" clientAuth
  sign front-proxy-client "/CN=front-proxy-client" "" clientAuth front-proxy-ca
  [ -s "$PKI/sa.key" ] || { openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null; openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null; }
  chmod 600 "$PKI"/*.key
  kubeconfig "$KUBECONFIG_FILE" kubernetes-admin admin default
  kubeconfig "$CL/argocd.kubeconfig" kubernetes-admin admin argocd
  kubeconfig "$PKI/controller-manager.kubeconfig" system:kube-controller-manager controller-manager default
  kubeconfig "$PKI/scheduler.kubeconfig" system:kube-scheduler scheduler default
}

write_auth_config() {
  {
    echo "apiVersion: apiserver.config.k8s.io/v1"
    echo "kind: AuthenticationConfiguration"
    echo "jwt:"
    echo "- issuer:"
    echo "    url: https://127.0.0.1:$P_OIDC"
    echo "    audiences: [kubernetes]"
    echo "    certificateAuthority: |"
    sed 's/^/      /' "$PKI/ca.crt"
    echo "  claimMappings:"
    echo "    username: {claim: sub, prefix: 'oidc:'}"
    echo "    groups: {claim: groups, prefix: 'oidc:'}"
  } > "$CL/authentication-config.yaml"
}

# ============================================================================ start

require_built() { # [with-argocd]
  local b bins=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm devops-stack-testenv-servers)
  [ "${1:-1}" = 1 ] && bins+=(argocd helm3 kustomize)
  for b in "${bins[@]}"; do
    [ -x "$BIN/$b" ] || die "missing $BIN/$b: run scripts/testenv.sh build"
  done
  [ -s "$SHARE/kwok-stages.yaml" ] || die "missing $SHARE/kwok-stages.yaml: run scripts/testenv.sh build"
  local c; for c in redis-server git openssl curl jq; do command -v "$c" >/dev/null || die "$c not installed: run scripts/testenv.sh build"; done
}

kc() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

start_component() { # name port-to-check cmd...
  local n=$1 port=$2; shift 2
  if alive "$n"; then return 0; fi
  if [ -n "$port" ] && port_busy "$port"; then die "port $port for $n of cluster $NAME is busy (not ours: $RUN/$n.pid)"; fi
  launch "$n" "$@"
}

nodes_manifest() {
  local i zones=(a b c)
  for i in 0 1 2; do cat <<NODE
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node-role.kubernetes.io/worker: ""
    topology.kubernetes.io/region: testenv
    topology.kubernetes.io/zone: testenv-${zones[$i]}
NODE
  done
  # kwok's volume stages provision and bind the claims of this class (not the default class)
  cat <<'CLASS'
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: kwok-volume
provisioner: kwok.x-k8s.io/volume
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
CLASS
}

argocd_env_common() { # prints env assignments shared by Argo CD components
  echo "ARGOCD_FAKE_IN_CLUSTER=true"
  echo "KUBECONFIG=$CL/argocd.kubeconfig"
  echo "HOME=$CL/argocd/home"
  echo "TMPDIR=$CL/argocd/tmp"
  echo "ARGOCD_TLS_DATA_PATH=$CL/argocd/tls"
  echo "ARGOCD_SSH_DATA_PATH=$CL/argocd/ssh"
  echo "ARGOCD_GNUPGHOME=$CL/argocd/gpg/keys"
  echo "ARGOCD_GPG_DATA_PATH=$CL/argocd/gpg/source"
  echo "ARGOCD_GPG_ENABLED=false"
  # git's askpass socket: Argo CD's default is /tmp/reposerver-ask-pass.sock, one path for every
  # cluster's repo-server, so the last one started answered the others' credential requests
  # ("unknown nonce") when two clusters run Argo CD
  echo "ARGOCD_ASK_PASS_SOCK=$CL/argocd/askpass.sock"
  echo "PATH=$ARGOCD_PATH_DIR:/usr/local/bin:/usr/bin:/bin"
}

# Runs one Argo CD component under the supervisor (scripts/testenv.sh _supervise). gate: none, or
# argocd / argocd-secretkey: each (re)start first waits for Argo CD's install (argocd_installed).
start_argocd_component() { # binary-name port gate args...
  local n=$1 port=$2 gate=$3; shift 3
  alive "$n" && return 0
  if port_busy "$port"; then die "port $port for $n of cluster $NAME is busy (not ours: $RUN/$n.pid)"; fi
  local envs=(); mapfile -t envs < <(argocd_env_common)
  launch "$n" "$SELF" _supervise "$CL" "$n" "$gate" -- env -i "${envs[@]}" "ARGOCD_BINARY_NAME=$n" \
    "HOSTNAME=$n-0" "$BIN/argocd" "$@"
}

# What the controllers and the server read at start-up and do not pick up later (the server exits
# without argocd-cm; the applicationset-controller, started without argocd-cm or without
# server.secretkey, runs without its webhook handler): the CRDs, and argocd-cm and argocd-secret in
# namespace argocd; with gate "argocd-secretkey" also argocd-secret's server.secretkey, which
# argocd-server writes at its first start when the install leaves it out (as the chart does).
argocd_installed() { # kubeconfig gate
  "$BIN/kubectl" --kubeconfig "$1" get crd applications.argoproj.io applicationsets.argoproj.io appprojects.argoproj.io >/dev/null 2>&1 &&
    "$BIN/kubectl" --kubeconfig "$1" -n argocd get configmap/argocd-cm secret/argocd-secret >/dev/null 2>&1 || return 1
  [ "$2" != argocd-secretkey ] ||
    [ -n "$("$BIN/kubectl" --kubeconfig "$1" -n argocd get secret argocd-secret -o jsonpath='{.data.server\.secretkey}' 2>/dev/null)" ]
}

# With DEVOPS_STACK_TESTENV_CHART_SOURCES naming a directory of unpacked upstream chart sources
# (one chart per subdirectory, dependencies vendored under its charts/), packages each with Helm
# into charts/upstream and indexes it: the chart repository then serves the real charts at
# $DEVOPS_STACK_TEST_HELM_REPO/upstream (DEVOPS_STACK_TEST_UPSTREAM_CHARTS in `env`).
publish_upstream_charts() {
  local src=${DEVOPS_STACK_TESTENV_CHART_SOURCES:-} out="$CL/charts/upstream" d n=0
  rm -rf "$out"
  [ -n "$src" ] || return 0
  [ -d "$src" ] || die "DEVOPS_STACK_TESTENV_CHART_SOURCES=$src is not a directory"
  mkdir -p "$out"
  for d in "$src"/*/; do
    [ -f "$d/Chart.yaml" ] || continue
    "$BIN/helm" package "$d" -d "$out" >/dev/null || die "helm package $d failed"
    n=$((n + 1))
  done
  "$BIN/helm" repo index "$out" --url "http://127.0.0.1:$P_HTTP/charts/upstream" || die "helm repo index $out failed"
  say "start: serving $n upstream charts from $src at http://127.0.0.1:$P_HTTP/charts/upstream"
}

cmd_start() {
  parse_name "$@"; cluster_vars
  require_built $((1 - NO_ARGOCD))
  local t0; t0=$(now)
  local timeout=${TESTENV_START_TIMEOUT:-90}
  mkdir -p "$CL" "$LOGS" "$RUN" "$CL/etcd" "$CL/git" "$CL/charts" "$CL/oidc"
  chmod 700 "$CL/etcd"
  publish_upstream_charts
  echo "$INDEX" > "$CL/index"
  make_pki
  write_auth_config

  # The project's servers first: the API server reads the issuer's discovery document.
  start_component servers "$P_HTTP" "$BIN/devops-stack-testenv-servers" \
    -http "127.0.0.1:$P_HTTP" -oidc "127.0.0.1:$P_OIDC" -issuer "https://127.0.0.1:$P_OIDC" \
    -tls-cert "$PKI/oidc.crt" -tls-key "$PKI/oidc.key" -signing-key "$CL/oidc/signing.key" \
    -git-root "$CL/git" -charts-root "$CL/charts" -scm-state "$CL/scm-state.json"
  start_component etcd "$P_ETCD" "$BIN/etcd" --name "testenv-$NAME" --data-dir "$CL/etcd" \
    --listen-client-urls "http://127.0.0.1:$P_ETCD" --advertise-client-urls "http://127.0.0.1:$P_ETCD" \
    --listen-peer-urls "http://127.0.0.1:$P_ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$P_ETCD_PEER" \
    --initial-cluster "testenv-$NAME=http://127.0.0.1:$P_ETCD_PEER" --initial-cluster-state new \
    --listen-metrics-urls "" --quota-backend-bytes 4294967296 --auto-compaction-retention 1 --snapshot-count 10000
  wait_until 30 "servers" "$LOGS/servers.log" servers curl -sf "http://127.0.0.1:$P_HTTP/healthz"
  wait_until 30 "OIDC issuer" "$LOGS/servers.log" servers curl -sf --cacert "$PKI/ca.crt" "https://127.0.0.1:$P_OIDC/.well-known/openid-configuration"
  wait_until 30 "etcd" "$LOGS/etcd.log" etcd curl -sf "http://127.0.0.1:$P_ETCD/health"

  start_component kube-apiserver "$P_API" "$BIN/kube-apiserver" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$P_API" \
    --etcd-servers="http://127.0.0.1:$P_ETCD" --etcd-prefix="/registry" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --authentication-config="$CL/authentication-config.yaml" \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --authorization-mode=Node,RBAC --allow-privileged=true \
    --service-cluster-ip-range=10.96.0.0/12 --endpoint-reconciler-type=none \
    --profiling=false
  wait_until "$timeout" "kube-apiserver /readyz" "$LOGS/kube-apiserver.log" kube-apiserver \
    curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://127.0.0.1:$P_API/readyz"

  start_component kube-controller-manager "$P_KCM" "$BIN/kube-controller-manager" \
    --kubeconfig="$PKI/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$PKI/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$PKI/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$P_KCM" --cluster-name="testenv-$NAME" \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --use-service-account-credentials=true --leader-elect=false \
    --controllers='*' --service-cluster-ip-range=10.96.0.0/12 --profiling=false
  start_component kube-scheduler "$P_SCHED" "$BIN/kube-scheduler" \
    --kubeconfig="$PKI/scheduler.kubeconfig" \
    --authentication-kubeconfig="$PKI/scheduler.kubeconfig" \
    --authorization-kubeconfig="$PKI/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$P_SCHED" --leader-elect=false --profiling=false
  local kwok_config=(--config="$SHARE/kwok-stages.yaml")
  if [ "$LOAD_BALANCERS" = 1 ]; then kwok_config+=(--config="$REPO/testenv/kwok/load-balancers.yaml"); fi
  start_component kwok "$P_KWOK" "$BIN/kwok" \
    --kubeconfig="$KUBECONFIG_FILE" "${kwok_config[@]}" \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-ip=127.0.0.1 --cidr=10.244.0.1/16 --node-lease-duration-seconds=40 \
    --server-address="127.0.0.1:$P_KWOK"

  nodes_manifest | kc apply -f - >/dev/null || die "creating the kwok nodes failed; see $LOGS/kube-apiserver.log"
  wait_until "$timeout" "kwok nodes (Ready)" "$LOGS/kwok.log" kwok nodes_ready
  say "start: cluster $NAME (index $INDEX) ready in $(since "$t0") s: kube-apiserver https://127.0.0.1:$P_API, 3 kwok nodes Ready"

  if [ "$NO_ARGOCD" = 1 ]; then
    echo 0 > "$CL/argocd-enabled"
    local c; for c in argocd-server argocd-applicationset-controller argocd-application-controller argocd-repo-server redis; do
      if alive "$c"; then say "start: --no-argocd: stopping $c"; stop_one "$c"; fi
    done
  else
    echo 1 > "$CL/argocd-enabled"
    start_argocd
    say "start: Argo CD processes supervised (the controllers and argocd-server wait for Argo CD's chart: CRDs, argocd-cm, argocd-secret): argocd-server 127.0.0.1:$P_ARGOCD"
  fi
  write_env
  say "start: done in $(since "$t0") s; eval \"\$($SELF env --name $NAME)\""
}

# shellcheck disable=SC2317 # called through wait_until
nodes_ready() {
  local n
  n=$(kc get nodes -l type=kwok -o jsonpath='{range .items[*]}{range .status.conditions[?(@.type=="Ready")]}{.status}{"\n"}{end}{end}' | grep -c True)
  [ "$n" -ge 3 ]
}

start_argocd() {
  mkdir -p "$CL/argocd/home" "$CL/argocd/tmp" "$CL/argocd/tls" "$CL/argocd/ssh" "$CL/argocd/gpg/keys" "$CL/argocd/gpg/source"
  # The repo-server trusts the cluster CA for 127.0.0.1 (the git server's HTTPS side), as the
  # argocd-tls-certs-cm volume gives it in a cluster: one file per host name.
  install -m 0644 "$PKI/ca.crt" "$CL/argocd/tls/127.0.0.1"
  chmod 700 "$CL/argocd/gpg/keys"
  start_component redis "$P_REDIS" redis-server --bind 127.0.0.1 --port "$P_REDIS" --save '' --appendonly no \
    --protected-mode yes --dir "$CL"
  wait_until 20 "redis" "$LOGS/redis.log" redis redis-cli -p "$P_REDIS" ping
  local redis="127.0.0.1:$P_REDIS" repo="127.0.0.1:$P_REPO"
  start_argocd_component argocd-repo-server "$P_REPO" none \
    --loglevel info --address 127.0.0.1 --port "$P_REPO" --metrics-address 127.0.0.1 --metrics-port "$P_REPO_METRICS" \
    --redis "$redis"
  start_argocd_component argocd-application-controller "$P_CTRL_METRICS" argocd \
    --loglevel info --redis "$redis" --repo-server "$repo" --metrics-port "$P_CTRL_METRICS" \
    --namespace argocd
  start_argocd_component argocd-applicationset-controller "$P_APPSET_WEBHOOK" argocd-secretkey \
    --loglevel info --argocd-repo-server "$repo" --metrics-addr "127.0.0.1:$P_APPSET_METRICS" \
    --probe-addr "127.0.0.1:$P_APPSET_PROBE" --webhook-addr "127.0.0.1:$P_APPSET_WEBHOOK" --namespace argocd
  start_argocd_component argocd-server "$P_ARGOCD" argocd \
    --loglevel info --insecure --address 127.0.0.1 --port "$P_ARGOCD" --metrics-address 127.0.0.1 \
    --metrics-port "$P_ARGOCD_METRICS" --redis "$redis" --repo-server "$repo" --namespace argocd
}

# The supervisor: runs a command again after it exits, with a growing backoff (1 s, doubling up to
# 10 s; back to 1 s after a run that lasted a minute). With a gate other than "none", each start
# first waits (polling every 2 s) until Argo CD is installed (argocd_installed). Logs to logs/<name>.log.
cmd_supervise() { # cluster-dir name gate -- cmd...
  local cl=$1 n=$2 gate=$3; shift 4
  local child=0 backoff=1 start rc waiting
  trap 'if [ "$child" != 0 ]; then kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null; fi; exit 0' TERM INT
  while :; do
    if [ "$gate" != none ]; then
      waiting=0
      until argocd_installed "$cl/kubeconfig" "$gate"; do
        [ "$waiting" = 1 ] || echo "$(date -Is) supervisor[$n]: waiting for Argo CD's install (CRDs; argocd-cm and argocd-secret in namespace argocd$([ "$gate" = argocd-secretkey ] && echo ", with server.secretkey"))"
        waiting=1; sleep 2
      done
    fi
    echo "$(date -Is) supervisor[$n]: starting (cluster dir $cl)"
    start=$(date +%s)
    "$@" &
    child=$!
    echo "$child" > "$cl/run/$n.child"
    rc=0
    if [ "$gate" = none ]; then
      wait "$child" || rc=$?
    else
      # A pod of Argo CD goes with its install: when the stack's destroy removed argocd-cm or
      # argocd-secret, stop the process and wait for the next install (which it must start
      # afresh: argocd-server writes the initial admin password only when it starts).
      while kill -0 "$child" 2>/dev/null; do
        sleep 3
        if ! "$BIN/kubectl" --kubeconfig "$cl/kubeconfig" -n argocd get configmap/argocd-cm secret/argocd-secret >/dev/null 2>&1; then
          echo "$(date -Is) supervisor[$n]: Argo CD's install is gone: stopping"
          kill -TERM "$child" 2>/dev/null; rc=removed; backoff=1
          break
        fi
      done
      if [ "$rc" = removed ]; then wait "$child" 2>/dev/null || true; child=0; continue; fi
      wait "$child" || rc=$?
    fi
    child=0
    if [ $(( $(date +%s) - start )) -ge 60 ]; then backoff=1; fi
    echo "$(date -Is) supervisor[$n]: exited with $rc; restarting in ${backoff}s"
    sleep "$backoff"
    backoff=$(( backoff * 2 > 10 ? 10 : backoff * 2 ))
  done
}

# ============================================================================ env, status, stop

write_env() {
  {
    echo "export DEVOPS_STACK_TEST_KUBECONFIG=$KUBECONFIG_FILE"
    if [ "$(cat "$CL/argocd-enabled" 2>/dev/null)" = 1 ]; then
      echo "export DEVOPS_STACK_TEST_ARGOCD_SERVER=127.0.0.1:$P_ARGOCD"
    else
      echo "unset DEVOPS_STACK_TEST_ARGOCD_SERVER  # started with --no-argocd"
    fi
    echo "export DEVOPS_STACK_TEST_GIT_URL=http://127.0.0.1:$P_HTTP/git"
    echo "export DEVOPS_STACK_TEST_GIT_HTTPS_URL=https://127.0.0.1:$P_OIDC/git"
    echo "export DEVOPS_STACK_TEST_GIT_ROOT=$CL/git"
    echo "export DEVOPS_STACK_TEST_HELM_REPO=http://127.0.0.1:$P_HTTP/charts"
    echo "export DEVOPS_STACK_TEST_HELM_ROOT=$CL/charts"
    echo "export DEVOPS_STACK_TEST_OIDC_ISSUER=https://127.0.0.1:$P_OIDC"
    echo "export DEVOPS_STACK_TEST_OIDC_CA=$PKI/ca.crt"
    echo "export DEVOPS_STACK_TEST_SCM_API=http://127.0.0.1:$P_HTTP"
    echo "export DEVOPS_STACK_TEST_HELM=$BIN/helm"
    echo "export DEVOPS_STACK_TEST_KUBECTL=$BIN/kubectl"
    echo "export DEVOPS_STACK_TEST_CLUSTER=$NAME"
    echo "export DEVOPS_STACK_TEST_CRD_DIR=$SHARE/argocd-crds"
    if [ -s "$CL/charts/upstream/index.yaml" ]; then
      echo "export DEVOPS_STACK_TEST_UPSTREAM_CHARTS=http://127.0.0.1:$P_HTTP/charts/upstream"
    else
      echo "unset DEVOPS_STACK_TEST_UPSTREAM_CHARTS  # started without DEVOPS_STACK_TESTENV_CHART_SOURCES"
    fi
  } > "$CL/env"
}

# env [--name N] [--argocd | --prefix P]: the cluster's variables; with --argocd named
# DEVOPS_STACK_TEST_ARGOCD_* (the tier that runs against the real Argo CD, beside a fast tier's
# DEVOPS_STACK_TEST_*), with --prefix P named DEVOPS_STACK_TEST_P_* (the platform tier's cluster).
cmd_env() {
  local args=() prefix="" argocd_only=0
  while [ $# -gt 0 ]; do
    case $1 in
      --argocd) prefix=ARGOCD; argocd_only=1; shift ;;
      --prefix) [ $# -ge 2 ] || die "--prefix needs a value"; prefix=$2; shift 2 ;;
      *) args+=("$1"); shift ;;
    esac
  done
  [ -z "$prefix" ] || [[ $prefix =~ ^[A-Z][A-Z0-9_]*$ ]] || die "--prefix must be upper-case letters, digits and _: $prefix"
  parse_name "${args[@]}"; cluster_vars
  [ -s "$CL/env" ] || die "cluster $NAME was never started (scripts/testenv.sh start --name $NAME)"
  alive kube-apiserver || die "cluster $NAME is not running (scripts/testenv.sh start --name $NAME)"
  if [ "$argocd_only" = 1 ]; then
    [ "$(cat "$CL/argocd-enabled" 2>/dev/null)" = 1 ] || die "cluster $NAME runs no Argo CD (started with --no-argocd)"
    grep -v 'DEVOPS_STACK_TEST_ARGOCD_SERVER' "$CL/env" | sed 's/DEVOPS_STACK_TEST_/DEVOPS_STACK_TEST_ARGOCD_/'
    grep 'DEVOPS_STACK_TEST_ARGOCD_SERVER' "$CL/env"
  elif [ -n "$prefix" ]; then
    sed "s/DEVOPS_STACK_TEST_/DEVOPS_STACK_TEST_${prefix}_/" "$CL/env"
  else
    cat "$CL/env"
  fi
}

ALL_COMPONENTS=(servers etcd kube-apiserver kube-controller-manager kube-scheduler kwok redis
  argocd-repo-server argocd-application-controller argocd-applicationset-controller argocd-server)

cmd_status() {
  parse_name "$@"; cluster_vars
  local argocd; argocd=$(cat "$CL/argocd-enabled" 2>/dev/null || echo 1)
  local b bad=0 bins=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm devops-stack-testenv-servers)
  [ "$argocd" = 1 ] && bins+=(argocd helm3 kustomize)
  for b in "${bins[@]}"; do
    [ -x "$BIN/$b" ] || { echo "not built: $BIN/$b missing (scripts/testenv.sh build)"; bad=1; }
  done
  [ "$bad" = 0 ] || return 1
  [ -d "$CL" ] || { echo "cluster $NAME: never started"; return 1; }
  echo "cluster $NAME (index $INDEX, dir $CL)"
  local c st down=0
  for c in "${ALL_COMPONENTS[@]}"; do
    if [[ $c == redis || $c == argocd-* ]] && [ "$argocd" != 1 ]; then continue; fi
    if alive "$c"; then
      st="running pid $(cat "$RUN/$c.pid")"
      if [[ $c == argocd-* ]]; then
        if [ -s "$RUN/$c.child" ] && kill -0 "$(cat "$RUN/$c.child")" 2>/dev/null; then
          st+=" (supervisor; process $(cat "$RUN/$c.child"), $(grep -c 'supervisor\[.*exited' "$LOGS/$c.log" 2>/dev/null || true) exits)"
        elif grep 'supervisor\[' "$LOGS/$c.log" 2>/dev/null | tail -1 | grep -q waiting; then
          st+=" (supervisor; waiting for Argo CD's install)"
        else st+=" (supervisor; restarting, see $LOGS/$c.log)"; fi
      fi
    else st="DOWN"; down=1; fi
    printf '  %-34s %-8s %s\n' "$c" "$(port_of "$c")" "$st"
  done
  if [ "$down" = 0 ]; then
    if curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://127.0.0.1:$P_API/readyz" >/dev/null; then
      echo "  kube-apiserver /readyz ok; nodes: $(kc get nodes --no-headers 2>/dev/null | awk '{print $1"="$2}' | tr '\n' ' ')"
    else echo "  kube-apiserver /readyz FAILED"; down=1; fi
  fi
  [ "$down" = 0 ]
}

stop_one() { # component
  local c=$1 pid
  alive "$c" || { rm -f "$RUN/$c.pid" "$RUN/$c.child"; return 0; }
  pid=$(cat "$RUN/$c.pid")
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  local i; for i in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$RUN/$c.pid" "$RUN/$c.child"
}

cmd_stop() {
  parse_name "$@"
  local names=()
  if [ "$ALL" = 1 ]; then
    local d; for d in "$CLUSTERS"/*/; do [ -d "$d" ] && names+=("$(basename "$d")"); done
  else names=("$NAME"); fi
  local n i
  for n in "${names[@]}"; do
    NAME=$n; cluster_vars
    [ -d "$RUN" ] || { say "stop: cluster $n was never started"; continue; }
    for (( i=${#ALL_COMPONENTS[@]}-1; i>=0; i-- )); do stop_one "${ALL_COMPONENTS[$i]}"; done
    say "stop: cluster $n stopped"
  done
}

# ============================================================================ main

main() {
  case ${1:-} in
    build) shift; cmd_build "$@" ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    status) shift; cmd_status "$@" ;;
    env) shift; cmd_env "$@" ;;
    selftest) shift; exec "$REPO/testenv/selftest.sh" "$@" ;;
    _supervise) shift; cmd_supervise "$@" ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; [ -n "${1:-}" ] && exit 2; exit 0 ;;
  esac
}
# One line: bash reads no further than it while main runs, so editing this file does not disturb
# a running build or supervisor.
main "$@"; exit
