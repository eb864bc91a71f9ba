#!/bin/sh
# Installs the Debian packages ragd needs to build, run and test, when any of
# them is missing. Safe to run again; does nothing when everything is there.
set -eu

PACKAGES="build-essential cmake pkg-config git ca-certificates
libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libsqlite3-dev
libutf8proc-dev libssl-dev libcmocka-dev curl libpq-dev
libopenblas-dev liblapacke-dev"

missing=""
for p in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done

if [ -n "$missing" ]; then
  echo "ragd: installing Debian packages:$missing"
  if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
  else
    SUDO=
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

if [ "${1:-}" = "--test" ] && ! command -v node >/dev/null 2>&1; then
  echo "ragd: installing Node.js for the integration tests"
  DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq --no-install-recommends nodejs npm
fi

# The streaming tests drive ragd with independent clients (the openai SDK,
# eventsource-parser, the ai package) and the chat page with Debian's
# Chromium through playwright-core: exact versions from package-lock.json.
if [ "${1:-}" = "--test" ]; then
  if ! dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "install ok installed"; then
    echo "ragd: installing Chromium for the end-to-end test"
    ${SUDO:-} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq --no-install-recommends chromium
  fi
  # Korean glyphs for the chat page's screenshot (the sample KB is half Korean).
  if ! dpkg-query -W -f='${Status}' fonts-nanum 2>/dev/null | grep -q "install ok installed"; then
    echo "ragd: installing fonts-nanum for the end-to-end screenshot"
    ${SUDO:-} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq --no-install-recommends fonts-nanum
  fi
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
    echo "ragd: installing the test clients (npm ci)"
    npm ci --no-audit --no-fund
  fi
fi

# The PostgreSQL store's conformance suite and multi-node tests start a
# throw-away cluster of Debian's server (scripts/pg-test-cluster.sh).
if [ "${1:-}" = "--test" ] && ! dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q "install ok installed"; then
  echo "ragd: installing PostgreSQL for the store tests"
  ${SUDO:-} apt-get update -qq
  DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq --no-install-recommends postgresql
fi

# tests/integration/nginx.test.mjs runs Debian's nginx in front of two nodes
# with the shipped proxy settings (deploy/nginx/).
if [ "${1:-}" = "--test" ] && ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "ragd: installing nginx for the reverse-proxy test"
  ${SUDO:-} apt-get update -qq
  DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq --no-install-recommends nginx-light
fi

# scripts/fuzz.sh (CI runs it after the sanitizer suite): clang and the
# libFuzzer runtime that Debian 12 ships in libclang-rt-14-dev.
if [ "${1:-}" = "--fuzz" ]; then
  for p in clang libclang-rt-14-dev; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      echo "ragd: installing $p for the fuzz targets"
      ${SUDO:-} apt-get update -qq
      DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq --no-install-recommends "$p"
    fi
  done
fi
