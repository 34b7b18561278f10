#!/usr/bin/env bash
# Installs everything mv3dad needs on a fresh Debian 12 / Python 3.11 machine (idempotent).
#   bash tools/install.sh          # runtime + test dependencies, editable install
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: open3d needs libusb; PyVista renders off-screen through EGL;
# python3-openvdb (system python3) is the reference reader for the .vdb writer's tests.
need=()
for p in libusb-1.0-0 libegl1 libgl1-mesa-dri python3-openvdb; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

PY="${PYTHON:-python3}"
# torch is pinned to the release that lies on local disk (a CUDA build that runs on CPU).
"$PY" -m pip install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
"$PY" -m pip install -q --disable-pip-version-check -e ".[dev]"
