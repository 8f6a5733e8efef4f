// Package maglev populates Maglev lookup tables for the datapath, as described in section 3.4
// ("Consistent hashing", Pseudocode 1) of D. E. Eisenbud et al., "Maglev: A Fast and Reliable
// Software Network Load Balancer", NSDI 2016.
//
// A table has M entries, M prime. Each backend derives a permutation of the entries from two
// hashes of its name (offset = h1 % M, skip = h2 % (M-1) + 1: because M is prime, every skip
// is coprime to M and the permutation visits every entry). The backends then take turns; on
// its turn a backend claims the next entry of its permutation that nobody holds yet. The
// datapath maps a flow to entry hash(flow) % M. Because a backend prefers the same entries
// whatever the other backends are, removing one backend mostly hands its own entries to the
// others and leaves theirs alone: mostly, not entirely, since the turns after the missing
// ones can land elsewhere. At M = 65537, removing one of 100 or of 1,000 equal backends also
// moves about 0.6% of the other backends' entries (TestDisruption reports the figures).
//
// # Weights
//
// A backend with weight w takes turns in proportion to w. The turns follow Katran's weighted
// Maglev (facebookincubator/katran, katran/lib/MaglevHashV2.cpp): in every round each backend
// adds its weight to a credit, and a backend whose credit reaches the largest weight spends
// that much and takes one turn. So the backend with the largest weight takes a turn every
// round, and the k-th turn of a backend of weight w falls in round ceil(k*maxWeight/w), taken
// in name order within a round. Since every turn claims exactly one entry, a backend ends
// with M*w/W entries, off by less than 1 + N*w/W (W the sum of the weights, N the number of
// backends of weight above zero).
//
// We chose it because it is exact integer arithmetic, reduces to Pseudocode 1 itself when
// the weights are equal (so the paper's balance and disruption results apply unchanged), and
// is what a production Maglev does. The other common method, entering a backend of weight w
// as w virtual backends, makes the work grow with the weights (a weight of 1,000 is 1,000
// permutations to walk). Katran walks the rounds one by one, N steps per round, which is up
// to N*M steps when one weight dwarfs the others. Build walks the rounds too while the
// largest weight is at most 16 times the average (at most 16 cheap steps per entry, one when
// the weights are equal), and beyond that keeps the backends in a heap ordered by the round
// of their next turn, which yields the same turns in O(log N) each.
//
// Weight 0 means "no turns": the backend stays in Table.Backends (so indexes do not move
// when a backend is drained) but owns no entry, and the other backends own exactly the
// entries they would own if it were absent.
//
// # Determinism
//
// Every node must build the same table from the same backends, so that a flow that ECMP
// moves to another node still reaches the same backend, and a restart must not move flows.
// Nothing here depends on the process: backends are sorted by name (byte-wise), and h1 and
// h2 are FNV-1a 64 over a fixed domain string and the name, finished with MurmurHash3's
// fmix64 (hash/maphash would differ per process). The hashes, their domain strings and the
// order of turns are part of the table format: changing any of them moves flows while nodes
// run different versions, and TestGolden pins them.
package maglev
