package eventnote_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferrolb/ferrolb/internal/eventnote"
	"github.com/ferrolb/ferrolb/internal/kubetest"
)

var env *kubetest.Env

func TestMain(m *testing.M) { os.Exit(kubetest.Run(m, &env)) }

func TestTruncate(t *testing.T) {
	for _, n := range []int{0, 10, eventnote.MaxNote, eventnote.MaxNote + 1, 5000} {
		// Multi-byte characters everywhere, so that a cut inside one would show.
		s := strings.Repeat("é", n/2)
		got := eventnote.Truncate(s)
		if len(got) > eventnote.MaxNote || !utf8.ValidString(got) {
			t.Errorf("%d bytes: got %d bytes, valid UTF-8 %v", len(s), len(got), utf8.ValidString(got))
		}
		if len(s) <= eventnote.MaxNote && got != s {
			t.Errorf("%d bytes: a note that fits was changed", len(s))
		}
		if len(s) > eventnote.MaxNote && !strings.HasSuffix(got, "(truncated: the object's status has the whole message)") {
			t.Errorf("%d bytes: the cut is not marked: ...%q", len(s), got[len(got)-40:])
		}
	}
}

// TestLongNoteReachesTheAPIServer: a note of 5,000 bytes (a Service refused hundreds of
// requested addresses) is stored, cut short; recorded as it is, the API server refuses it
// and the Event is lost.
func TestLongNoteReachesTheAPIServer(t *testing.T) {
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	stop := make(chan struct{})
	b.StartRecordingToSink(stop)
	defer func() { close(stop); b.Shutdown() }()
	rec := b.NewRecorder(env.Scheme, "eventnote-test")

	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "eventnote"}}); err != nil {
		t.Fatal(err)
	}
	svc := func(name string) *corev1.Service {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "eventnote", Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
		if err := env.Client.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	long := "refused: " + strings.Repeat("192.0.2.1 (held by another Service); ", 140)
	eventnote.Recorder(rec).Eventf(svc("wrapped"), nil, corev1.EventTypeWarning, "Refused", "Allocate", "%s", long)
	rec.Eventf(svc("raw"), nil, corev1.EventTypeWarning, "Refused", "Allocate", "%s", long)

	var got *eventsv1.Event
	for deadline := time.Now().Add(15 * time.Second); got == nil; time.Sleep(100 * time.Millisecond) {
		var evs eventsv1.EventList
		if err := env.Client.List(ctx, &evs, client.InNamespace("eventnote")); err != nil {
			t.Fatal(err)
		}
		for i, e := range evs.Items {
			if e.Regarding.Name == "raw" {
				t.Errorf("the API server stored a note of %d bytes", len(e.Note))
			}
			if e.Regarding.Name == "wrapped" {
				got = &evs.Items[i]
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the Event with the long note never reached the API server")
		}
	}
	if !strings.HasPrefix(got.Note, "refused: 192.0.2.1 (held by another Service); ") || len(got.Note) > eventnote.MaxNote {
		t.Errorf("note of %d bytes: %.80q...", len(got.Note), got.Note)
	}
}
