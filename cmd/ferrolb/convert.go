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
annotations as they are, and a warning names anything it would not. Cilium's ConfigMap
cilium-config is read for hints (not written): its load-balancing settings (DSR, Maglev, XDP
acceleration, kube-proxy replacement) become warnings naming the speaker's --datapath flags.
Other kinds are reported and skipped. One run reports every problem of every object.
Convert objects that refer to each other (pools and advertisements, peers and their
configs and BFD profiles) in one run. See docs/migration.md for the field-by-field mapping.

Exit status:
  0  everything mapped exactly
  1  an error: an input or a document of one could not be read, or an object could not
     be converted (the output holds the others)
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

// runConvert converts the files and returns the exit status. An input that cannot be read,
// or a document of one that holds no objects, is reported and the rest is converted all the
// same, so that one run reports everything.
func runConvert(files []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var srcs []compat.Source
	unread := false
	for _, f := range files {
		objs, err := readSources(f, stdin)
		if err != nil {
			unread = true
			for _, e := range splitErrors(err) {
				fmt.Fprintf(stderr, "error: %v\n", e)
			}
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
	case unread || len(res.Errors) > 0:
		return convertError
	case len(res.Warnings) > 0:
		return convertWarnings
	}
	return convertClean
}

// readSources decodes one input; with an error, the objects are those of the documents that
// could be read, and the error names the input and joins one error per other document.
func readSources(name string, stdin io.Reader) ([]compat.Source, error) {
	r, label := stdin, "standard input"
	if name != "-" {
		f, err := os.Open(name) //nolint:gosec // reading the file the user names is the point
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r, label = f, name
	}
	objs, err := compat.Decode(r)
	if err != nil {
		var wrapped []error
		for _, e := range splitErrors(err) {
			wrapped = append(wrapped, fmt.Errorf("%s: %w", label, e))
		}
		return objs, errors.Join(wrapped...)
	}
	return objs, nil
}

// splitErrors undoes errors.Join, one line of the report per error.
func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
