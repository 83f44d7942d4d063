# DPHIANT: three commands for a newcomer on Debian 12, whatever Node.js it has (or none but curl).
#   make demo   the dev stack: two Orthanc servers, the middleman, sample data flowing through (Ctrl-C stops it);
#               installs only what it runs: Orthanc, gcc, tesseract, Node.js 24, npm ci (no FerretDB, no browser);
#               make demo TLS=1: the same with DICOM TLS on both links (dev certificates in .stack/tls/)
#   make cluster the same modality side in front of two middleman nodes behind HAProxy, the crosswalk on FerretDB and
#               the PACS's index on PostgreSQL (Ctrl-C stops it); installs the demo's needs, PostgreSQL 15,
#               orthanc-postgresql, haproxy, and builds FerretDB with Go
#   make test   the test suite against real Orthanc, DCMTK, FerretDB (built with Go) and Chromium
# Node.js 24: the one on PATH when it is 24, else scripts/install-node.sh puts the official build in .stack/node
# (from the npm registry); every recipe runs with .stack/node/bin first on PATH, so npm, npx, tsc, mocha and the
# `node` children the tests spawn all get the same Node.
.PHONY: demo cluster test bench deps cluster-deps test-deps build clean

export PATH := $(CURDIR)/.stack/node/bin:$(PATH)

# the demo's needs; test-deps adds the tests' (dcmtk, docker-compose, chromium, rsyslog, FerretDB)
deps:
	@scripts/install-deps.sh

cluster-deps:
	@scripts/install-deps.sh --cluster

test-deps:
	@scripts/install-deps.sh --test

build: deps
	@echo "==> building (tsc) with Node.js $$(node --version)"
	@npx tsc -p tsconfig.json

demo: build
	@echo "==> demo with Node.js $$(node --version)"
	@node dist/scripts/demo.js$(if $(filter 1 yes true,$(TLS)), --tls)

cluster: cluster-deps build
	@echo "==> cluster with Node.js $$(node --version)"
	@node dist/scripts/cluster.js

test: test-deps build
	@echo "==> running tests with Node.js $$(node --version)"
	@npx mocha

bench: test-deps build
	@echo "==> benchmarks with Node.js $$(node --version)"
	@node --initial-old-space-size=256 dist/bench/run.js

clean:
	rm -rf dist .stack
