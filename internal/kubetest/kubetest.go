// Package kubetest starts a real kube-apiserver and etcd, with FerroLB's CRDs installed, for
// tests and for running the controller locally. The binaries are built from Go modules by
// hack/envtest.sh and cached outside the clone; Start runs that script when
// KUBEBUILDER_ASSETS is not set, so a plain `go test ./...` works on a fresh machine (slowly,
// the first time).
package kubetest

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	ferrolbv1alpha1 "github.com/ferrolb/ferrolb/api/v1alpha1"
)

// ServiceCIDR is the API server's Service cluster IP ranges: dual-stack, so Services can be
// PreferDualStack and RequireDualStack, and an IPv4 /16 because the default /24 would cap a test
// at 253 Services; scale tests need thousands.
const ServiceCIDR = "10.96.0.0/16,fd00:10:96::/112"

// Env is a running API server with etcd.
type Env struct {
	// Config reaches the API server as an administrator.
	Config *rest.Config
	// Client is a controller-runtime client with FerroLB's and Kubernetes' kinds registered.
	Client client.Client
	// Scheme holds FerroLB's and Kubernetes' kinds.
	Scheme *kruntime.Scheme

	env *envtest.Environment
}

// Start builds (or reuses) the binaries, starts etcd and kube-apiserver, and installs the CRDs
// from config/crd/bases. Stop it with Stop.
func Start() (*Env, error) { return start(true) }

// StartWithoutCRDs is Start without FerroLB's CRDs: a cluster FerroLB is not installed in.
func StartWithoutCRDs() (*Env, error) { return start(false) }

func start(crds bool) (*Env, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	assets, err := Assets(root)
	if err != nil {
		return nil, err
	}
	scheme := kruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := ferrolbv1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets, Scheme: scheme}
	if crds {
		env.CRDDirectoryPaths = []string{filepath.Join(root, "config", "crd", "bases")}
		env.ErrorIfCRDPathMissing = true
	}
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", ServiceCIDR)
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start kube-apiserver and etcd from %s: %w", assets, err)
	}
	// Tests create objects at a high rate; the client's default limit (5 qps) would measure
	// the limiter rather than the code.
	cfg.QPS, cfg.Burst = 1000, 2000
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, errors.Join(err, env.Stop())
	}
	return &Env{Config: cfg, Client: c, Scheme: scheme, env: env}, nil
}

// Stop stops kube-apiserver and etcd and removes their data.
func (e *Env) Stop() error {
	return e.env.Stop()
}

// CRDs lists the custom resources installed, as group resources.
func (e *Env) CRDs() []schema.GroupResource {
	var out []schema.GroupResource
	for _, crd := range e.env.CRDs {
		out = append(out, schema.GroupResource{Group: crd.Spec.Group, Resource: crd.Spec.Names.Plural})
	}
	return out
}

// WriteKubeconfig writes a kubeconfig for kubectl and `ferrolb --kubeconfig` to path.
func (e *Env) WriteKubeconfig(path string) error {
	c := e.Config
	kc := clientcmdapi.NewConfig()
	kc.Clusters["ferrolb-local"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: c.CertData, ClientKeyData: c.KeyData, Token: c.BearerToken,
	}
	kc.Contexts["ferrolb-local"] = &clientcmdapi.Context{Cluster: "ferrolb-local", AuthInfo: "admin"}
	kc.CurrentContext = "ferrolb-local"
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	return clientcmd.WriteToFile(*kc, path)
}

// Assets returns the directory holding kube-apiserver and etcd: KUBEBUILDER_ASSETS when set,
// otherwise the output of hack/envtest.sh, which builds them on first use.
func Assets(root string) (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", filepath.Join(root, "hack", "envtest.sh"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("hack/envtest.sh: %w\n%s", err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// RepoRoot is the directory of the FerroLB module this package was compiled from.
func RepoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the kubetest source file")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("repository root not found from %s: %w", file, err)
	}
	return filepath.Clean(root), nil
}

// Run is a package's TestMain with a real API server: it starts one, stores it in *env, runs
// the tests, stops it and returns the exit code: func TestMain(m *testing.M) {
// os.Exit(kubetest.Run(m, &env)) }.
func Run(m *testing.M, env **Env) int {
	// A fuzzing worker runs only the fuzz target: it needs no API server, and go test kills
	// workers without letting them stop one.
	flag.Parse()
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		return m.Run()
	}
	e, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*env = e
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}
