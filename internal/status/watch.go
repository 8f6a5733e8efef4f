package status

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// clearScreen moves the cursor home and clears a terminal (ANSI).
const clearScreen = "\x1b[H\x1b[2J"

// WatchOptions say where and how Watch draws.
type WatchOptions struct {
	// Interval between readings; default 2s.
	Interval time.Duration
	// Format is text, json or yaml.
	Format string
	// Out gets each report that differs from the one before: text redrawn (the screen
	// cleared first when Terminal), JSON one document after another, YAML documents
	// separated by "---".
	Out io.Writer
	// Errors gets the failures to read, in the json and yaml formats (text shows them on
	// the screen instead).
	Errors   io.Writer
	Terminal bool
}

// Watch reads a report every interval and draws it when it changed, until ctx ends (then it
// returns nil). A failed reading is drawn too, and reading goes on: the API server may come
// back.
func Watch(ctx context.Context, src Source, o WatchOptions) error {
	interval := o.Interval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	last := ""
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*interval)
		r, err := src.Gather(rctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		var frame bytes.Buffer
		key := ""
		switch {
		case err != nil && o.Format != FormatText && o.Format != "":
			key = err.Error()
		case err != nil:
			fmt.Fprintf(&frame, "FerroLB at %s: %v\n(trying again every %s; ctrl-C ends)\n",
				time.Now().UTC().Format("2006-01-02 15:04:05 MST"), err, interval)
			key = err.Error()
		default:
			if err := Write(&frame, r, o.Format); err != nil {
				return err
			}
			key = changeKey(r, frame.Bytes(), o.Format)
		}
		if key != last {
			last = key
			if err := draw(o, frame.Bytes(), err); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// changeKey is what must differ for a report to be drawn again: the report without its time
// (json, yaml), or the text without its first line (which holds the time; ages below it
// change as time passes, and are redrawn).
func changeKey(r *Report, rendered []byte, format string) string {
	if format == FormatJSON || format == FormatYAML {
		c := *r
		c.Time = time.Time{}
		b, _ := json.Marshal(&c) // cannot fail: the report was just written
		return string(b)
	}
	if i := bytes.IndexByte(rendered, '\n'); i >= 0 {
		return string(rendered[i+1:])
	}
	return string(rendered)
}

func draw(o WatchOptions, frame []byte, readErr error) error {
	switch {
	case readErr != nil && o.Format != FormatText && o.Format != "":
		if o.Errors != nil {
			_, err := fmt.Fprintf(o.Errors, "%s: %v\n", time.Now().UTC().Format(time.RFC3339), readErr)
			return err
		}
		return nil
	case o.Format == FormatYAML:
		if _, err := io.WriteString(o.Out, "---\n"); err != nil {
			return err
		}
	case o.Format == FormatJSON:
	case o.Terminal:
		if _, err := io.WriteString(o.Out, clearScreen); err != nil {
			return err
		}
	default:
		if _, err := io.WriteString(o.Out, "\n"); err != nil {
			return err
		}
	}
	_, err := o.Out.Write(frame)
	return err
}
