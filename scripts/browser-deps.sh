#!/usr/bin/env bash
# What the browser tests (crates/tenantry/tests/browser.rs) need, installed idempotently:
# Debian's chromium and chromium-driver (as root, apt), and axe-core from the npm registry,
# vendored into crates/tenantry/tests/browser/vendor/axe.min.js (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."
AXE_VERSION=4.14.1
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
VENDOR=crates/tenantry/tests/browser/vendor
if [ ! -s "$VENDOR/axe.min.js" ] || ! grep -q "axe v$AXE_VERSION" "$VENDOR/axe.min.js"; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent "axe-core@$AXE_VERSION" >/dev/null && tar -xzf "axe-core-$AXE_VERSION.tgz")
    mkdir -p "$VENDOR"
    cp "$work/package/axe.min.js" "$VENDOR/axe.min.js"
fi
chromium --version
chromedriver --version
echo "axe-core $AXE_VERSION: $VENDOR/axe.min.js"
