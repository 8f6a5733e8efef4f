package maglev_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ferrolb/ferrolb/internal/maglev"
)

// sinkTable keeps the compiler from dropping the Build under measurement.
var sinkTable maglev.Table

// BenchmarkBuild measures building a table from scratch, as the speaker does when a
// Service's endpoints change.
func BenchmarkBuild(b *testing.B) {
	cases := []struct {
		name     string
		size     int
		backends []maglev.Backend
	}{
		{"M=65537/N=10", maglev.DefaultSize, equalBackends(10)},
		{"M=65537/N=100", maglev.DefaultSize, equalBackends(100)},
		{"M=65537/N=1000", maglev.DefaultSize, equalBackends(1000)},
		{"M=65537/N=1000/random-weights", maglev.DefaultSize, randomWeights(1000, 100)},
		{"M=65537/N=1000/one-heavy", maglev.DefaultSize, oneHeavy(1000)},
		{"M=65537/N=1000/ten-heavy", maglev.DefaultSize, tenHeavy(1000)},
		{"M=251/N=10", maglev.SmallSize, equalBackends(10)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				t, err := maglev.Build(c.size, c.backends)
				if err != nil {
					b.Fatal(err)
				}
				sinkTable = t
			}
		})
	}
}

// equalBackends returns n backends of weight 1 named like Pod endpoints.
func equalBackends(n int) []maglev.Backend {
	backends := make([]maglev.Backend, n)
	for i := range backends {
		backends[i] = maglev.Backend{Name: backendName(i), Weight: 1}
	}
	return backends
}

func backendName(i int) string {
	return fmt.Sprintf("10.244.%d.%d:8080", i/250, 10+i%250)
}

// randomWeights returns n backends with weights in [1, maxWeight], from a fixed seed.
func randomWeights(n int, maxWeight uint32) []maglev.Backend {
	rng := rand.New(rand.NewPCG(uint64(n), uint64(maxWeight)))
	backends := equalBackends(n)
	for i := range backends {
		backends[i].Weight = 1 + rng.Uint32N(maxWeight)
	}
	return backends
}

// oneHeavy returns n backends of weight 1 but one of weight 2^32-1: the case that costs
// Katran's round-by-round loop N*M steps.
func oneHeavy(n int) []maglev.Backend {
	backends := equalBackends(n)
	backends[n/2].Weight = 1<<32 - 1
	return backends
}

// tenHeavy returns n backends of weight 1 but ten of weight 1000: the largest weight is
// about 90 times the average, so Build orders the turns with its heap, and the heap is busy
// (the light backends' turns are spread over every round).
func tenHeavy(n int) []maglev.Backend {
	backends := equalBackends(n)
	for i := range 10 {
		backends[i*n/10].Weight = 1000
	}
	return backends
}
