#!/usr/bin/env bash
# Checks that `make image` is reproducible: builds the image again from a fresh checkout of
# HEAD in another directory, with an empty Go build cache (so nothing is reused from the
# first build), and compares the image digests and the tar files byte for byte.
#   bash hack/image-reproducible.sh bin/ferrolb-image.tar   # the image make image built
set -euo pipefail
first=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
cd "$(dirname "$0")/.."
if [ -n "$(git status --porcelain)" ]; then
  echo "image-reproducible: the tree has changes; commit them first (the second build checks out HEAD)" >&2
  exit 1
fi
tmp=$(mktemp -d /tmp/ferrolb-image-XXXXXX)
trap 'git worktree remove --force "$tmp/src" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git worktree add --detach "$tmp/src" HEAD >/dev/null 2>&1
s=$SECONDS
# The same module cache (downloads are checked against go.sum), a new build cache.
GOCACHE=$tmp/gocache GOFLAGS=-modcacherw make -C "$tmp/src" image >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log" >&2; exit 1; }
echo "image-reproducible: second build, cold build cache: $((SECONDS - s))s" >&2
digest() { tar -xOf "$1" index.json | grep -o '"digest": *"sha256:[0-9a-f]*"' | head -1 | grep -o 'sha256:[0-9a-f]*'; }
a=$(digest "$first") b=$(digest "$tmp/src/bin/ferrolb-image.tar")
if [ "$a" != "$b" ] || ! cmp -s "$first" "$tmp/src/bin/ferrolb-image.tar"; then
  echo "image-reproducible: digests differ: $a (here) and $b (fresh checkout)" >&2
  exit 1
fi
echo "image-reproducible: $a both times, tar files identical"
