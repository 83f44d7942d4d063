# DPHIANT: two commands for a newcomer on Debian with Node.js 20.
#   make demo   the dev stack: two Orthanc servers, the middleman, sample data flowing through (Ctrl-C stops it)
#   make test   the test suite against real Orthanc, DCMTK (and later FerretDB, Chromium)
.PHONY: demo test bench deps build clean

deps:
	@scripts/install-deps.sh

build: deps
	@echo "==> building (tsc)"
	@npx tsc -p tsconfig.json

demo: build
	@node dist/scripts/demo.js

test: build
	@echo "==> running tests"
	@npx mocha

bench: build
	@node dist/bench/run.js

clean:
	rm -rf dist .stack
