package main

import (
	"context"

	"github.com/cilium/ebpf"
)

func setupFerroLBSNAT(context.Context, *env) (func() error, *ebpf.Program, error) {
	return nil, nil, notAvailable("internal/datapath not built yet")
}

func setupFerroLBDSR(context.Context, *env) (func() error, *ebpf.Program, error) {
	return nil, nil, notAvailable("internal/datapath not built yet")
}
