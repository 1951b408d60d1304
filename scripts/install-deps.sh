#!/usr/bin/env bash
# Installs the Debian packages hoptrace's build, tests and demo need, only those
# missing. Usage: scripts/install-deps.sh [group...]   groups: bpf test runtimes bench
set -euo pipefail

declare -A cmd_pkg=(
  [clang]=clang [llvm-strip]=llvm [ip]=iproute2 [bpftool]=bpftool [curl]=curl
  [nginx]=nginx [wrk]=wrk [h2load]=nghttp2-client [iptables]=iptables
  [python3]=python3 [java]=default-jdk-headless [node]=nodejs [gcc]=gcc
)
groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=(bpf test)

want=()
for g in "${groups[@]}"; do
  case "$g" in
    bpf)   want+=(clang llvm-strip) ;;
    # gcc: the race detector (make race-test) links through cgo.
    test)  want+=(ip bpftool curl python3 gcc) ;;
    # Apps in other runtimes, for the context-inference tests (infer/testdata).
    runtimes) want+=(java node) ;;
    bench) want+=(nginx wrk h2load iptables) ;;
    *) echo "install-deps: unknown group $g (bpf, test, runtimes, bench)" >&2; exit 2 ;;
  esac
done

pkgs=()
for c in "${want[@]}"; do
  command -v "$c" >/dev/null 2>&1 || pkgs+=("${cmd_pkg[$c]}")
done
# libbpf headers (bpf_helpers.h) come without a command to look for.
for g in "${groups[@]}"; do
  [ "$g" = bpf ] && [ ! -f /usr/include/bpf/bpf_helpers.h ] && pkgs+=(libbpf-dev linux-libc-dev)
done
[ ${#pkgs[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages ${pkgs[*]}; run as root or: sudo apt-get install -y ${pkgs[*]}" >&2
  exit 1
fi
echo "install-deps: apt-get install ${pkgs[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
