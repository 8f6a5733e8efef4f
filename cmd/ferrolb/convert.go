package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/ferrolb/ferrolb/internal/compat"
)

// Exit statuses of ferrolb convert.
const (
	convertClean    = 0 // everything mapped
	convertError    = 1 // an input could not be read, or an object could not be converted
	convertWarnings = 2 // converted, but something has no exact equivalent: read the warnings
)

func newConvertCommand() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "convert -f FILE|- [-f FILE...]",
		Short: "Translate MetalLB or Cilium configuration into FerroLB's",
		Long: `convert reads MetalLB's and Cilium's configuration objects (YAML, several documents
per file, or "kubectl get -o yaml" lists) and writes the equivalent FerroLB objects to
standard output, ready for "kubectl apply -f -". What FerroLB cannot express exactly is
reported on standard error, one line per field, naming the source object and the reason.

Read: MetalLB IPAddressPool, L2Advertisement, BGPAdvertisement, BGPPeer, BFDProfile,
Community; Cilium CiliumLoadBalancerIPPool, CiliumL2AnnouncementPolicy,
CiliumBGPPeeringPolicy, CiliumBGPClusterConfig, CiliumBGPPeerConfig, CiliumBGPAdvertisement.
Services are checked (not written): FerroLB honours MetalLB's and Cilium's address
annotations as they are, and a warning names anything it would not. Other kinds are reported
and skipped. Convert objects that refer to each other (pools and advertisements, peers and
their configs) in one run. See docs/migration.md for the field-by-field mapping.

Exit status:
  0  everything mapped exactly
  1  an error: an input could not be read, or an object could not be converted (the
     output holds the others)
  2  converted with warnings: read them before applying the output`,
		Example: `  kubectl get ipaddresspools,l2advertisements,bgpadvertisements,bgppeers,bfdprofiles,communities \
      -n metallb-system -o yaml | ferrolb convert -f - > ferrolb.yaml
  ferrolb convert -f cilium-pools.yaml -f cilium-l2.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return errors.New("no input: give -f FILE, or -f - for standard input")
			}
			// The root command maps every error to exit status 1; convert has a third outcome,
			// converted with warnings, so it sets its own status.
			if code := runConvert(files, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()); code != convertClean {
				os.Exit(code)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, `input file; "-" reads standard input (repeatable)`)
	return cmd
}

// runConvert converts the files and returns the exit status.
func runConvert(files []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var srcs []compat.Source
	for _, f := range files {
		objs, err := readSources(f, stdin)
		if err != nil {
			fmt.Fprintf(stderr, "error: %v\n", err)
			return convertError
		}
		srcs = append(srcs, objs...)
	}
	res := compat.Convert(srcs)
	if err := res.WriteYAML(stdout); err != nil {
		fmt.Fprintf(stderr, "error: writing the output: %v\n", err)
		return convertError
	}
	if err := res.WriteReport(stderr); err != nil {
		return convertError
	}
	switch {
	case len(res.Errors) > 0:
		return convertError
	case len(res.Warnings) > 0:
		return convertWarnings
	}
	return convertClean
}

func readSources(name string, stdin io.Reader) ([]compat.Source, error) {
	if name == "-" {
		objs, err := compat.Decode(stdin)
		if err != nil {
			return nil, fmt.Errorf("standard input: %w", err)
		}
		return objs, nil
	}
	f, err := os.Open(name) //nolint:gosec // reading the file the user names is the point
	if err != nil {
		return nil, err
	}
	defer f.Close()
	objs, err := compat.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return objs, nil
}
