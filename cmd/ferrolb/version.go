package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ferrolb/ferrolb/internal/buildinfo"
)

// version is set at release builds: -ldflags "-X main.version=v0.1.0".
var version = "dev"

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and the commit it was built from",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			// The commit and Go version as recorded by the Go toolchain; the same as the
			// labels of ferrolb_build_info.
			fmt.Fprintln(cmd.OutOrStdout(), buildinfo.Read(version))
		},
	}
}
