package maglev

// The two hashes of a backend name. Each is FNV-1a 64 (the constants of hash/fnv) over a
// fixed domain string followed by the name, finished with the fmix64 finalizer of
// MurmurHash3. The domain strings make them two different functions of the name; after
// fmix64 nothing relates them that the table could notice.
//
// Why not hash/maphash: it is seeded randomly per process, and every node must compute the
// same table. Why not FNV-1a alone: its multiply only carries bits upwards, so the low bits of
// the hash depend only on the low bits of the input bytes, and skip = h2 % (M-1) with
// M = 65537 keeps exactly the low 16 bits; fmix64 folds the high bits into the low ones.
// Why not a stronger hash (SipHash, xxHash): names are chosen by the cluster, not by an
// attacker who could benefit from collisions, and this is 20 lines with no dependency.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211

	offsetDomain = "ferrolb/maglev/offset:"
	skipDomain   = "ferrolb/maglev/skip:"
)

// fnv1a continues an FNV-1a 64 hash in state h over s. Starting from fnvOffset64 it equals
// hash/fnv's New64a; it exists so that hashing a name allocates nothing.
func fnv1a(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return h
}

// fmix64 is the 64-bit finalizer of MurmurHash3: a bijection in which every input bit
// affects every output bit.
func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

func nameHash(domain, name string) uint64 {
	return fmix64(fnv1a(fnv1a(fnvOffset64, domain), name))
}

// permutation returns the offset and skip of the backend named name in a table of size m,
// m prime: its permutation of the entries is offset, offset+skip, offset+2*skip, ... mod m.
func permutation(name string, m uint32) (offset, skip uint32) {
	offset = uint32(nameHash(offsetDomain, name) % uint64(m)) //nolint:gosec // a remainder below m, itself a uint32
	skip = uint32(nameHash(skipDomain, name)%uint64(m-1)) + 1 //nolint:gosec // a remainder below m-1, itself a uint32
	return offset, skip
}
