#!/usr/bin/env bash
# Installs what DPHIANT's demo and tests need when it is missing, and says what it does.
# Debian packages: orthanc, dcmtk (storescu, echoscu, dcmdump…), gcc (the loopback-bind shim), docker-compose
# (validates docker-compose.yml offline), chromium (the web UI's browser tests, driven by playwright-core),
# tesseract-ocr with its English data (finds burned-in text in ultrasound and secondary-capture pixels).
# Then `npm ci` when node_modules is missing or older than the lock file.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v Orthanc >/dev/null || need+=(orthanc)
command -v storescu >/dev/null || need+=(dcmtk)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v chromium >/dev/null || need+=(chromium)
command -v tesseract >/dev/null || need+=(tesseract-ocr)

if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "==> installing Debian packages: ${need[*]}"
  # the orthanc package starts a system Orthanc on 8042/4242 where it can; the dev stack runs its own
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "DPHIANT needs Node.js 20 or later (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

# FerretDB (a MongoDB wire-protocol server) for the crosswalk's MongoDB tests, built from tools/ferretdb with Go
ferret=.stack/bin/ferretdb
if [ ! -x "$ferret" ] || [ tools/ferretdb/go.sum -nt "$ferret" ] || [ tools/ferretdb/main.go -nt "$ferret" ]; then
  if command -v go >/dev/null; then
    echo "==> building FerretDB v1.24.2 (tools/ferretdb, a few minutes the first time)"
    mkdir -p .stack/bin
    (cd tools/ferretdb && go build -o ../../"$ferret" .)
  else
    echo "==> Go is not installed: the crosswalk's MongoDB (FerretDB) tests will be skipped" >&2
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  echo "==> npm ci"
  npm ci --no-audit --no-fund
  touch node_modules
fi
