#!/bin/sh
# Installs the Debian packages strata's build, tests and demo need (the one
# list), with sudo only when not root: it runs as written both as a user
# with sudo and as root in a container that has no sudo (nor make); then the
# npm package the server tests use.
#   build-essential       gcc, make, libc headers, ASan/UBSan runtimes
#   pkg-config libjansson-dev   JSON (inspect --json, plans, hardware profiles)
#   glslc libvulkan-dev   the GPU back end's shaders (compiled at build time) and Vulkan headers
#   mesa-vulkan-drivers   lavapipe, a Vulkan device on the CPU, for the GPU tests
#   libmicrohttpd-dev     HTTP for `strata serve`
#   curl                  the server tests talk to `strata serve` with it
#   nodejs npm            the server tests run the official OpenAI client (npm package openai);
#                         only when npm is missing (another Node.js, e.g. NodeSource's, bundles it
#                         and cannot take Debian's npm beside it)
set -e
PACKAGES="build-essential pkg-config libjansson-dev glslc libvulkan-dev mesa-vulkan-drivers libmicrohttpd-dev curl"
command -v npm >/dev/null || PACKAGES="$PACKAGES nodejs npm"
if [ "$(id -u)" -eq 0 ]; then as_root=; else as_root=sudo; fi
$as_root apt-get update
# shellcheck disable=SC2086 # the list is meant to split
$as_root apt-get install -y $PACKAGES
# The official OpenAI client for the server tests (npm package openai, into
# tests/serve/node_modules); without it those tests are reported skipped.
npm install --prefix "$(dirname "$0")/../tests/serve" --no-audit --no-fund --loglevel=error ||
    echo "tools/deps.sh: npm install of the openai client failed: its server test will be skipped" >&2
