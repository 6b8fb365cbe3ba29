#!/usr/bin/env bash
# Installs the Debian packages keel needs that are missing. Sourced by run.sh and test.sh.
keel_install_deps() {
  local pkgs=(cmake ninja-build g++ clang libgtest-dev libgmock-dev googletest libbenchmark-dev
              libxxhash-dev libabsl-dev libjemalloc-dev capnproto libcapnp-dev libssl-dev openssl gcovr pkg-config
              redis-tools "$@")
  local missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
