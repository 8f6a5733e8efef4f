package bgp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

// GoBGP opens its sockets from its own goroutines (the listener in StartBgp's management
// operation on the Serve goroutine, each peer's dialer in the peer's FSM goroutine), and a
// socket belongs to the namespace of the thread that creates it. Locking one thread into
// the node namespace (netns.Do) therefore does not reach GoBGP's sockets, and switching
// every thread of the process (syscall.AllThreadsSyscall(SYS_SETNS)) is refused when cgo
// is on, which -race needs. So the speaker under test runs in a child process started with
// `ip netns exec NODE`: the test binary itself, re-executed with helperEnv set, which
// TestMain turns into a small server for the Speaker API over stdin/stdout (one JSON
// request per line, one JSON reply per line). It is the same code, built with the same
// flags (-race included); in production the speaker runs in the host's namespace and needs
// none of this.
const helperEnv = "FERROLB_BGP_SPEAKER_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		if err := speakerHelper(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "speaker helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type helperRequest struct {
	// Op is one of "new" (New with Config), "run" (Run in a goroutine), "apply" (Apply
	// with Identity, Peers and Paths), "states" (PeerStates), "servers" (an error naming
	// the goroutines there are besides the helper's and Run's own: a GoBGP server's, when
	// one runs) and "stop" (Run's context ends: an error unless Run returns and every
	// goroutine it started is gone).
	Op       string
	Config   Config   `json:",omitzero"`
	Identity Identity `json:",omitzero"`
	Peers    []Peer   `json:",omitempty"`
	Paths    []Path   `json:",omitempty"`
}

type helperReply struct {
	Err    string      `json:",omitempty"`
	States []PeerState `json:",omitempty"`
}

// runTop is the function at the top of Run's goroutine while it runs no server.
const runTop = "github.com/ferrolb/ferrolb/internal/bgp.(*Speaker).Run"

// speakerHelper serves the Speaker API until its input ends, then stops the speaker and
// returns after Run has returned, with an error if a goroutine Run started is left.
func speakerHelper(in io.Reader, out io.Writer) error {
	// Whatever runs now is the runtime's and the helper's; anything more when Run has
	// returned is a leak.
	before := goleak.IgnoreCurrent()
	dec := json.NewDecoder(bufio.NewReader(in))
	enc := json.NewEncoder(out)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sp *Speaker
	var runErr chan error // nil until Run runs, and again once it has returned
	stop := func() error {
		cancel()
		if runErr != nil {
			select {
			case err := <-runErr:
				runErr = nil
				if err != nil {
					return fmt.Errorf("speaker's Run: %w", err)
				}
			case <-time.After(10 * time.Second):
				return errors.New("run has not returned 10s after its context ended")
			}
		}
		if err := goleak.Find(before); err != nil {
			return fmt.Errorf("after Run returned: %w", err)
		}
		return nil
	}
	for {
		var req helperRequest
		if err := dec.Decode(&req); err != nil {
			if !errors.Is(err, io.EOF) {
				return err
			}
			break
		}
		var rep helperReply
		var err error
		switch {
		case req.Op == "new" && sp == nil:
			req.Config.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			sp, err = New(req.Config)
		case sp == nil:
			err = errors.New("no speaker yet")
		case req.Op == "run":
			runErr = make(chan error, 1)
			go func() { runErr <- sp.Run(ctx) }()
		case req.Op == "apply":
			err = sp.Apply(req.Identity, req.Peers, req.Paths)
		case req.Op == "states":
			rep.States, err = sp.PeerStates()
		case req.Op == "servers":
			err = goleak.Find(before, goleak.IgnoreTopFunction(runTop))
		case req.Op == "stop":
			err = stop()
		default:
			err = fmt.Errorf("unknown op %q", req.Op)
		}
		if err != nil {
			rep.Err = err.Error()
		}
		if err := enc.Encode(rep); err != nil {
			return err
		}
	}
	return stop()
}

// remoteSpeaker drives a Speaker running in a child process inside a namespace.
type remoteSpeaker struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	dec    *json.Decoder
	stderr syncBuffer
	killed bool

	// What SetIdentity, SetPeers and SetPaths apply: each applies all three.
	id    Identity
	peers []Peer
	paths []Path
}

// syncBuffer is a bytes.Buffer that the exec package's copying goroutine may write while
// a failing test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startRemoteSpeaker starts a speaker (Config{ListenPort: -1}: it only dials) in a child
// process in ns and runs it; its peers and paths are applied with nodeIdentity until
// SetIdentity says otherwise.
func startRemoteSpeaker(t testing.TB, ns *netns.NS) *remoteSpeaker {
	t.Helper()
	r := newRemoteSpeaker(t, ns)
	r.Run()
	return r
}

// newRemoteSpeaker is startRemoteSpeaker without Run.
func newRemoteSpeaker(t testing.TB, ns *netns.NS) *remoteSpeaker {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := &remoteSpeaker{t: t, cmd: ns.Command(exe), id: nodeIdentity}
	r.cmd.Env = append(os.Environ(), helperEnv+"=1")
	r.cmd.Stderr = &r.stderr
	if r.stdin, err = r.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r.dec = json.NewDecoder(stdout)
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stop)
	r.call(helperRequest{Op: "new", Config: Config{ListenPort: -1}})
	return r
}

// stop closes the helper's input, which stops the speaker (Cease to every peer), and
// waits for the process; it kills it if it does not end in time.
func (r *remoteSpeaker) stop() {
	if r.killed {
		return
	}
	_ = r.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			r.t.Errorf("speaker helper: %v", err)
		}
	case <-time.After(15 * time.Second):
		_ = r.cmd.Process.Kill()
		if err := <-done; err != nil {
			r.t.Logf("speaker helper killed: %v", err)
		}
		r.t.Error("speaker helper did not stop within 15s; killed")
	}
	if r.t.Failed() {
		r.t.Logf("speaker helper stderr:\n%s", r.stderr.String())
	}
}

// kill ends the speaker process at once (SIGKILL): no Cease is sent, the kernel closes
// its connections, as when a node's speaker crashes.
func (r *remoteSpeaker) kill() {
	r.t.Helper()
	if err := r.cmd.Process.Kill(); err != nil {
		r.t.Fatal(err)
	}
	_ = r.cmd.Wait()
	r.killed = true
}

func (r *remoteSpeaker) call(req helperRequest) helperReply {
	r.t.Helper()
	if err := json.NewEncoder(r.stdin).Encode(req); err != nil {
		r.t.Fatalf("send %s: %v", req.Op, err)
	}
	var rep helperReply
	if err := r.dec.Decode(&rep); err != nil {
		r.t.Fatalf("reply to %s: %v\nstderr:\n%s", req.Op, err, r.stderr.String())
	}
	if rep.Err != "" {
		r.t.Fatalf("%s: %s", req.Op, rep.Err)
	}
	return rep
}

// Run starts the speaker's Run.
func (r *remoteSpeaker) Run() {
	r.t.Helper()
	r.call(helperRequest{Op: "run"})
}

// Stop ends Run's context and fails the test unless Run returns and every goroutine it
// started is gone.
func (r *remoteSpeaker) Stop() {
	r.t.Helper()
	r.call(helperRequest{Op: "stop"})
}

func (r *remoteSpeaker) Apply(id Identity, peers []Peer, paths []Path) {
	r.t.Helper()
	r.id, r.peers, r.paths = id, peers, paths
	r.call(helperRequest{Op: "apply", Identity: id, Peers: peers, Paths: paths})
}

func (r *remoteSpeaker) SetIdentity(id Identity) {
	r.t.Helper()
	r.Apply(id, r.peers, r.paths)
}

func (r *remoteSpeaker) SetPeers(p ...Peer) {
	r.t.Helper()
	r.Apply(r.id, p, r.paths)
}

func (r *remoteSpeaker) SetPaths(p ...Path) {
	r.t.Helper()
	r.Apply(r.id, r.peers, p)
}

func (r *remoteSpeaker) PeerStates() []PeerState {
	r.t.Helper()
	return r.call(helperRequest{Op: "states"}).States
}

// Servers returns "" when the speaker runs no GoBGP server (no goroutine but the helper's
// and Run's own), else the goroutines there are.
func (r *remoteSpeaker) Servers() string {
	r.t.Helper()
	if err := json.NewEncoder(r.stdin).Encode(helperRequest{Op: "servers"}); err != nil {
		r.t.Fatalf("send servers: %v", err)
	}
	var rep helperReply
	if err := r.dec.Decode(&rep); err != nil {
		r.t.Fatalf("reply to servers: %v\nstderr:\n%s", err, r.stderr.String())
	}
	return rep.Err
}
