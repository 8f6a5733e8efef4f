//go:build race

package maglev_test

const raceEnabled = true
