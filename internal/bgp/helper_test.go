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
	Op     string // "start", "peers", "paths", "states"
	Config Config `json:",omitzero"`
	Peers  []Peer `json:",omitempty"`
	Paths  []Path `json:",omitempty"`
}

type helperReply struct {
	Err    string      `json:",omitempty"`
	States []PeerState `json:",omitempty"`
}

// speakerHelper serves the Speaker API until its input ends, then stops the speaker and
// returns after Run has returned.
func speakerHelper(in io.Reader, out io.Writer) error {
	dec := json.NewDecoder(bufio.NewReader(in))
	enc := json.NewEncoder(out)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sp *Speaker
	runErr := make(chan error, 1)
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
		case req.Op == "start" && sp == nil:
			req.Config.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			sp, err = New(req.Config)
			if err == nil {
				go func() { runErr <- sp.Run(ctx) }()
			}
		case sp == nil:
			err = errors.New("not started")
		case req.Op == "peers":
			err = sp.SetPeers(req.Peers)
		case req.Op == "paths":
			err = sp.SetPaths(req.Paths)
		case req.Op == "states":
			rep.States, err = sp.PeerStates()
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
	if sp == nil {
		return nil
	}
	cancel()
	return <-runErr
}

// remoteSpeaker drives a Speaker running in a child process inside a namespace.
type remoteSpeaker struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	dec    *json.Decoder
	stderr syncBuffer
	killed bool
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

func startRemoteSpeaker(t testing.TB, ns *netns.NS, cfg Config) *remoteSpeaker {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := &remoteSpeaker{t: t, cmd: ns.Command(exe)}
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
	r.call(helperRequest{Op: "start", Config: cfg})
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

func (r *remoteSpeaker) SetPeers(p ...Peer) {
	r.t.Helper()
	r.call(helperRequest{Op: "peers", Peers: p})
}

func (r *remoteSpeaker) SetPaths(p ...Path) {
	r.t.Helper()
	r.call(helperRequest{Op: "paths", Paths: p})
}

func (r *remoteSpeaker) PeerStates() []PeerState {
	r.t.Helper()
	return r.call(helperRequest{Op: "states"}).States
}
