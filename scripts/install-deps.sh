#!/usr/bin/env bash
# Installs what DPHIANT needs when it is missing, and says what it does. Without arguments, what `make demo` needs;
# with --cluster, also what `make cluster` needs; with --test, also what the tests and benchmarks need (`make test`,
# `make bench`).
#   demo:   Node.js 24 (scripts/install-node.sh), Debian packages orthanc, gcc (the loopback-bind shim the dev
#           stack preloads into Orthanc), tesseract-ocr with its English data (finds burned-in text in the demo's
#           ultrasound pixels); then `npm ci`
#   --cluster: also the several-node stack's servers: PostgreSQL 15 (FerretDB's backend and the PACS's index),
#           orthanc-postgresql, haproxy, and FerretDB built with Go from tools/ferretdb (an error without Go)
#   --test: also dcmtk (storescu, echoscu, dcmdump…), docker-compose (validates docker-compose.yml offline),
#           chromium (the web UI's browser tests, driven by playwright-core), FerretDB (a MongoDB wire-protocol
#           server for the crosswalk's MongoDB tests), built with Go from tools/ferretdb, rsyslog with rsyslog-gnutls
#           (a real syslog receiver for the audit trail's records, over TLS and UDP), and for the several-node
#           tests PostgreSQL 15 (FerretDB's backend and the PACS's index), orthanc-postgresql and haproxy
# `npm ci` runs when node_modules is missing, older than the lock file, or built by a Node.js of another ABI
# (better-sqlite3 is a native module): .stack/node_modules.abi records the ABI it was built for.
set -euo pipefail
cd "$(dirname "$0")/.."

test_deps=false
cluster_deps=false
case "${1:-}" in
  --test) test_deps=true; cluster_deps=true ;;
  --cluster) cluster_deps=true ;;
  "") ;;
  *) echo "usage: $0 [--cluster | --test]" >&2; exit 2 ;;
esac

need=()
command -v Orthanc >/dev/null || need+=(orthanc)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v tesseract >/dev/null || need+=(tesseract-ocr)
if $test_deps; then
  command -v storescu >/dev/null || need+=(dcmtk)
  command -v docker-compose >/dev/null || need+=(docker-compose)
  command -v chromium >/dev/null || need+=(chromium)
  [ -x /usr/sbin/rsyslogd ] || need+=(rsyslog)
  # its TLS driver, a package of its own
  ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1 || need+=(rsyslog-gnutls)
fi
if $cluster_deps; then
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql-15)
  [ -e /usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so ] || need+=(orthanc-postgresql)
  [ -x /usr/sbin/haproxy ] || need+=(haproxy)
fi

if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "==> installing Debian packages: ${need[*]}"
  # the orthanc, postgresql, haproxy and rsyslog packages start system services where they can; the dev stack and
  # the tests run their own
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

scripts/install-node.sh
# the Makefile puts .stack/node/bin first on PATH; run directly, this script does the same
PATH=$PWD/.stack/node/bin:$PATH
echo "==> Node.js $(node --version) ($(command -v node)), npm $(npm --version)"

if $cluster_deps; then
  # FerretDB for the crosswalk's MongoDB tests and the several-node stack: a few minutes to build, so the demo
  # does without it
  ferret=.stack/bin/ferretdb
  if [ ! -x "$ferret" ] || [ tools/ferretdb/go.sum -nt "$ferret" ] || [ tools/ferretdb/main.go -nt "$ferret" ]; then
    if command -v go >/dev/null; then
      echo "==> building FerretDB v1.24.2 (tools/ferretdb, a few minutes the first time)"
      mkdir -p .stack/bin
      (cd tools/ferretdb && go build -o ../../"$ferret" .)
    elif $test_deps; then
      echo "==> Go is not installed: the crosswalk's MongoDB (FerretDB) tests will be skipped" >&2
    else
      echo "==> make cluster needs FerretDB, built from tools/ferretdb with Go $(sed -n 's/^go //p' tools/ferretdb/go.mod) or later, and Go is not installed (https://go.dev/dl)" >&2
      exit 1
    fi
  fi
fi

abi_stamp=.stack/node_modules.abi
abi=$(node -p 'process.versions.modules')
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ] || [ "$(cat "$abi_stamp" 2>/dev/null)" != "$abi" ]; then
  # node-gyp compiles better-sqlite3 against the headers of the node that runs it (not a nodedir from ~/.npmrc)
  node_prefix=$(node -p 'require("path").dirname(require("path").dirname(process.execPath))')
  [ -f "$node_prefix/include/node/node_version.h" ] && export npm_config_nodedir=$node_prefix
  echo "==> npm ci (Node.js ABI $abi)"
  npm ci --no-audit --no-fund
  touch node_modules
  mkdir -p .stack
  echo "$abi" >"$abi_stamp"
fi
