#!/usr/bin/env bash
# Builds native/build/pocketsphinx-worker (the local CPU ASR worker) against Debian's libpocketsphinx.
# Idempotent: does nothing when the binary is newer than its source (pass --force to rebuild).
# Needs: apt-get install gcc pkg-config libpocketsphinx-dev libsphinxbase-dev pocketsphinx-en-us
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/pocketsphinx-worker.c"
out_dir="$here/build"
out="$out_dir/pocketsphinx-worker"
packages="gcc pkg-config libpocketsphinx-dev libsphinxbase-dev pocketsphinx-en-us"

fail() {
  echo "native/build.sh: $*" >&2
  exit 1
}

if [[ "${1:-}" != "--force" && -x "$out" && "$out" -nt "$src" && "$out" -nt "${BASH_SOURCE[0]}" ]]; then
  echo "native/build.sh: $out is up to date"
  exit 0
fi

command -v gcc >/dev/null 2>&1 || fail "gcc not found; install it: apt-get install $packages"
command -v pkg-config >/dev/null 2>&1 || fail "pkg-config not found; install it: apt-get install $packages"
pkg-config --exists pocketsphinx sphinxbase ||
  fail "pocketsphinx/sphinxbase development files not found (pkg-config pocketsphinx sphinxbase); install them: apt-get install $packages"

cflags=$(pkg-config --cflags pocketsphinx sphinxbase)
libs=$(pkg-config --libs pocketsphinx sphinxbase)

# Fail early with a clear message rather than a wall of compiler errors.
printf '#include <pocketsphinx.h>\n#include <err.h>\nint main(void){return 0;}\n' |
  gcc $cflags -x c -fsyntax-only - 2>/dev/null ||
  fail "pocketsphinx.h / err.h not usable with '$cflags'; install: apt-get install $packages"

if [[ ! -f /usr/share/pocketsphinx/model/en-us/en-us/mdef ]]; then
  echo "native/build.sh: warning: en-us model not found under /usr/share/pocketsphinx/model/en-us (apt-get install pocketsphinx-en-us); the worker will need -hmm/-lm/-dict" >&2
fi

mkdir -p "$out_dir"
tmp="$out.tmp.$$"
# shellcheck disable=SC2086
gcc -std=gnu11 -O2 -Wall -Wextra -Wno-unused-parameter $cflags -o "$tmp" "$src" $libs
mv -f "$tmp" "$out"
echo "native/build.sh: built $out"
