#!/usr/bin/env bash
# make check-deps: fails when a package links what it must not, and prints the chain of
# imports that brings it in.
#   - The production binary (cmd/ferrolb, what the image ships) carries no test scaffolding:
#     neither the testing package nor controller-runtime's envtest (which creates
#     /tmp/kubebuilder-envtest when the binary starts). The lab, which needs both, is a
#     developer binary of its own: cmd/ferrolb-lab. Nor chromedp, with which a test drives
#     Chromium.
#   - The speaker does not depend on the controller: what both use (the API scheme, metrics
#     serving) lives in packages of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
mod=$($GO list -m)

# chain GRAPH TARGET prints an import chain from GRAPH's package to TARGET, or fails when it
# does not link TARGET. GRAPH is go list -deps' output, which lists the package itself last.
chain() {
  printf '%s\n' "$1" | awk -v target="$2" '
    { edges[$1] = $0; last = $1 }
    END {
      root = last; seen[root] = 1; queue[0] = root; head = 0; tail = 1
      while (head < tail && !(target in seen)) {
        p = queue[head++]
        n = split(edges[p], e, " ")
        for (i = 2; i <= n; i++)
          if (!(e[i] in seen)) { seen[e[i]] = 1; parent[e[i]] = p; queue[tail++] = e[i] }
      }
      if (!(target in seen)) exit 1
      out = target
      for (p = target; p != root; ) { p = parent[p]; out = p " -> " out }
      print out
    }'
}

failed=0
deny() { # deny PKG TARGET WHY
  local graph c
  graph=$($GO list -deps -f '{{.ImportPath}} {{join .Imports " "}}' "$1")
  if c=$(chain "$graph" "$2"); then
    echo "check-deps: $1 links $2 ($3):" >&2
    echo "  $c" >&2
    failed=1
  fi
}

deny ./cmd/ferrolb testing "test scaffolding in the production binary"
deny ./cmd/ferrolb sigs.k8s.io/controller-runtime/pkg/envtest "test scaffolding in the production binary"
deny ./cmd/ferrolb github.com/chromedp/chromedp "the status page's browser test drives Chromium with it; the binary must not"
deny ./internal/speaker "$mod/internal/controller" "the speaker must not depend on the controller"

if [ "$failed" = 0 ]; then
  echo "check-deps: ok ($($GO list -deps ./cmd/ferrolb | grep -c .) packages in cmd/ferrolb)"
fi
exit "$failed"
