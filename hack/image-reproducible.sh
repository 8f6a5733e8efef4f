#!/usr/bin/env bash
# Checks that `make image` is reproducible: builds the image of HEAD twice, from two fresh
# checkouts in different directories, the second with an empty Go build cache (so nothing
# is reused from the first), and compares the image digests and the tar files byte for byte.
# Uncommitted changes play no part.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d /tmp/ferrolb-image-XXXXXX)
trap 'for w in a b; do git worktree remove --force "$tmp/$w" >/dev/null 2>&1 || true; done; rm -rf "$tmp"' EXIT
digest() { tar -xOf "$1" index.json | grep -o '"digest": *"sha256:[0-9a-f]*"' | head -1 | grep -o 'sha256:[0-9a-f]*'; }
for w in a b; do
  git worktree add --detach "$tmp/$w" HEAD >/dev/null 2>&1
  s=$SECONDS
  cache=$(go env GOCACHE); [ $w = b ] && cache=$tmp/gocache
  # The same module cache (downloads are checked against go.sum).
  GOCACHE=$cache GOFLAGS=-modcacherw make -C "$tmp/$w" image >"$tmp/$w.log" 2>&1 || { cat "$tmp/$w.log" >&2; exit 1; }
  echo "image-reproducible: build $w ($([ $w = a ] && echo "shared build cache" || echo "empty build cache")): $((SECONDS - s))s, $(digest "$tmp/$w/bin/ferrolb-image.tar")" >&2
done
a=$(digest "$tmp/a/bin/ferrolb-image.tar") b=$(digest "$tmp/b/bin/ferrolb-image.tar")
if [ "$a" != "$b" ] || ! cmp -s "$tmp/a/bin/ferrolb-image.tar" "$tmp/b/bin/ferrolb-image.tar"; then
  echo "image-reproducible: digests differ: $a and $b" >&2
  exit 1
fi
echo "image-reproducible: $a both times, tar files identical ($(stat -c %s "$tmp/a/bin/ferrolb-image.tar") bytes)"
