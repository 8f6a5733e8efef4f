// Package eventnote keeps FerroLB's Events within what the API server stores. An Event's note
// (events.k8s.io/v1) may hold at most 1024 bytes; a longer one is refused and the Event is
// lost, and the notes that grow longest (every refused address of a Service, every field of
// a broken policy) are the ones an operator most needs to read.
package eventnote

import (
	"fmt"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
)

// MaxNote is the API server's limit on an Event's note, in bytes.
const MaxNote = 1024

// truncated ends a note that was cut short.
const truncated = " ... (truncated: the object's status has the whole message)"

// Truncate returns note if it fits in MaxNote bytes, else its beginning, cut at a character
// boundary, followed by a marker that says so.
func Truncate(note string) string {
	if len(note) <= MaxNote {
		return note
	}
	cut := MaxNote - len(truncated)
	for cut > 0 && !utf8.RuneStart(note[cut]) {
		cut--
	}
	return note[:cut] + truncated
}

// Recorder wraps r so that every note it records is cut to MaxNote bytes.
func Recorder(r events.EventRecorder) events.EventRecorder { return limited{r} }

type limited struct{ r events.EventRecorder }

func (l limited) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	l.r.Eventf(regarding, related, eventtype, reason, action, "%s", Truncate(fmt.Sprintf(note, args...)))
}
