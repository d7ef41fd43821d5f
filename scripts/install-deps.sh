#!/usr/bin/env bash
# Installs what building and testing capstan needs on Debian 12, as root. Idempotent: packages
# already present are not fetched again, so CI and repeated runs stay fast.
set -euo pipefail

packages=()
need() { # need <command> <debian package>
    command -v "$1" >/dev/null 2>&1 || packages+=("$2")
}
need cc build-essential
need curl curl
need pkg-config pkg-config
# The service proxy and network policies program the kernel through nft; nodes of a test
# cluster are network namespaces made with ip (iproute2) and entered with nsenter.
need nft nftables
need ip iproute2
need nsenter util-linux
# libcontainer's seccomp support links libseccomp; the test images are built from the
# statically linked busybox.
dpkg-query -W -f='${Status}' libseccomp-dev 2>/dev/null | grep -q "install ok installed" || packages+=(libseccomp-dev)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed" || packages+=(busybox-static)
# A local registry on 127.0.0.1 for the end-to-end tests of image pulls.
dpkg-query -W -f='${Status}' docker-registry 2>/dev/null | grep -q "install ok installed" || packages+=(docker-registry)
# The Python Kubernetes client, for the e2e test that drives capstan with it.
/usr/bin/python3 -c "import kubernetes" 2>/dev/null || packages+=(python3-kubernetes)

if [ ${#packages[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is missing: install the Rust toolchain (rustup) first" >&2
    exit 1
fi
if ! command -v kubectl >/dev/null 2>&1; then
    echo "kubectl is missing: the end-to-end tests drive the installed kubectl" >&2
    exit 1
fi
