#!/bin/sh
# Installs etcd (Debian's etcd-server package) for `gaia-bench api --etcd`, unless an `etcd`
# binary is already on PATH. The package's own service is not needed: the benchmark starts
# its own etcd on a temporary directory and free ports.
set -eu
if command -v etcd >/dev/null 2>&1; then
    etcd --version | head -1
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    exec sudo "$0" "$@"
fi
apt-get install -y etcd-server
etcd --version | head -1
