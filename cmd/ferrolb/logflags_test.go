package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestLogFlags(t *testing.T) {
	for _, tt := range []struct {
		flags              logFlags
		debug, info, error bool
		json               bool
		wantErr            string
	}{
		{flags: logFlags{level: "info", format: "json"}, info: true, error: true, json: true},
		{flags: logFlags{level: "debug", format: "console"}, debug: true, info: true, error: true},
		{flags: logFlags{level: "error", format: "json"}, error: true, json: true},
		{flags: logFlags{level: "1", format: "json"}, debug: true, info: true, error: true, json: true},
		{flags: logFlags{level: "0", format: "json"}, info: true, error: true, json: true},
		{flags: logFlags{level: "info", format: "json", verbose: true}, debug: true, info: true, error: true, json: true},
		{flags: logFlags{level: "loud", format: "json"}, wantErr: `--log-level="loud": want "error", "info", "debug" or a verbosity`},
		{flags: logFlags{level: "-1", format: "json"}, wantErr: `--log-level="-1"`},
		{flags: logFlags{level: "info", format: "xml"}, wantErr: `--log-format="xml": want "json" or "console"`},
	} {
		var buf bytes.Buffer
		log, err := tt.flags.logger(&buf)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%+v: error %v, want %q", tt.flags, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%+v: %v", tt.flags, err)
		}
		log.V(1).Info("a debug line")
		log.Info("an info line")
		log.Error(nil, "an error line")
		out := buf.String()
		for _, c := range []struct {
			want bool
			line string
		}{{tt.debug, "a debug line"}, {tt.info, "an info line"}, {tt.error, "an error line"}} {
			if strings.Contains(out, c.line) != c.want {
				t.Errorf("%+v: %q logged: %v, want %v:\n%s", tt.flags, c.line, !c.want, c.want, out)
			}
		}
		first, _, _ := strings.Cut(out, "\n")
		if isJSON := json.Valid([]byte(first)); isJSON != tt.json {
			t.Errorf("%+v: first line %q is JSON: %v, want %v", tt.flags, first, isJSON, tt.json)
		}
	}
}
