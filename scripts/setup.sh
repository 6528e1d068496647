#!/usr/bin/env bash
# Everything calmkit needs on Debian 12 (bookworm) before `npm ci`:
# - system packages: libsndfile and libsoxr (the audio front-end), libdeflate (the checkpoint loader's CRC-32),
#   cmake, a C++ compiler, python3-venv; clang with its runtime libraries (the libFuzzer targets) and clang-format
#   (`npm run lint` checks native/'s style with it); fluidsynth,
#   the GM soundfont and vorbis-tools for the demo data; redis-server for the queue tests; DejaVu fonts for PNG
#   figures;
# - the project's Python environment .venv (requirements.txt): PyPI's torch==2.11.0, whose LibTorch (with MKL,
#   oneDNN and CUDA 13) the addon links, and numpy. About 2.6 GB of wheels; skipped when already in place.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(
  libsndfile1-dev libsoxr-dev libdeflate-dev pkg-config cmake g++ make python3-venv
  clang libclang-rt-14-dev clang-format
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

# Debian's python3 (not whatever python3 is first on PATH): the venv must outlive shell set-ups like pyenv.
PY=/usr/bin/python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
echo "setup: .venv <- requirements.txt (PyPI's torch and numpy; about 2.6 GB of wheels the first time)"
.venv/bin/python -m pip install -q --disable-pip-version-check --no-cache-dir -r requirements.txt
echo "setup: done"
