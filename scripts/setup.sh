#!/usr/bin/env bash
# System packages calmkit needs on Debian 12 (bookworm): LibTorch (CPU), OpenBLAS (openmp variant), libsndfile,
# libsoxr, build tools; python3-torch for the reference and the export script; fluidsynth + the GM soundfont and
# vorbis-tools for the demo data; redis-server for the queue tests; DejaVu fonts for PNG figures.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(
  libtorch-dev libopenblas0-openmp libsndfile1-dev libsoxr-dev pkg-config cmake g++ make
  python3-torch python3-numpy
  fluidsynth fluid-soundfont-gm vorbis-tools
  redis-server fonts-dejavu-core
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: all system packages present"
fi
# Without this, apt may satisfy libtorch with the reference BLAS (~30x slower), or pick OpenBLAS's pthread
# variant whose threads ignore torch's thread setting.
for lib in libblas.so.3 liblapack.so.3; do
  alt="/usr/lib/x86_64-linux-gnu/openblas-openmp/${lib}"
  if [ -e "$alt" ]; then $SUDO update-alternatives --set "${lib}-x86_64-linux-gnu" "$alt" >/dev/null 2>&1 || true; fi
done
echo "setup: done"
