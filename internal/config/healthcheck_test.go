package config_test

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/healthcheck"
)

// The health check annotations: defaults, every setting, and each invalid value reported
// with the annotation's name and reason, turning the checks off (never the endpoints).
func TestServiceHealthCheck(t *testing.T) {
	withKind := func(kind string, more map[string]string) map[string]string {
		m := map[string]string{"ferrolb.io/health-check": kind}
		for k, v := range more {
			m[k] = v
		}
		return m
	}
	def := healthcheck.Default(healthcheck.TCP)
	for _, tc := range []struct {
		name     string
		ann      map[string]string
		want     config.HealthCheck
		on       bool
		problems []string // each a prefix of a problem, in order
	}{
		{name: "none", ann: nil},
		{name: "tcp with the defaults", ann: withKind("tcp", nil), want: config.HealthCheck{Check: def}, on: true},
		{
			name: "http with every setting",
			ann: withKind("http", map[string]string{"ferrolb.io/health-check-path": "/healthz?full=1", "ferrolb.io/health-check-port": "9090",
				"ferrolb.io/health-check-interval": "2s", "ferrolb.io/health-check-timeout": "500ms",
				"ferrolb.io/health-check-healthy-threshold": "3", "ferrolb.io/health-check-unhealthy-threshold": " 1 "}),
			want: config.HealthCheck{Port: 9090, Check: healthcheck.Check{Kind: healthcheck.HTTP, Path: "/healthz?full=1",
				Interval: 2 * time.Second, Timeout: 500 * time.Millisecond, HealthyThreshold: 3, UnhealthyThreshold: 1}},
			on: true,
		},
		{
			name:     "a path on a tcp check is ignored, the check runs",
			ann:      withKind("tcp", map[string]string{"ferrolb.io/health-check-path": "/x"}),
			want:     config.HealthCheck{Check: def},
			on:       true,
			problems: []string{"metadata.annotations[ferrolb.io/health-check-path]: ignored: only http checks have a path"},
		},
		{
			name:     "settings without a kind are ignored",
			ann:      map[string]string{"ferrolb.io/health-check-port": "9090"},
			problems: []string{"metadata.annotations[ferrolb.io/health-check-port]: ignored: ferrolb.io/health-check is not set"},
		},
		{
			name:     "unknown kind",
			ann:      withKind("udp", nil),
			problems: []string{`metadata.annotations[ferrolb.io/health-check]: "udp" is not a kind of check: tcp or http; the Service is served without active health checks`},
		},
		{
			name:     "interval below the bound",
			ann:      withKind("tcp", map[string]string{"ferrolb.io/health-check-interval": "10ms"}),
			problems: []string{"metadata.annotations[ferrolb.io/health-check-interval]: 10ms is not within 1s and 5m0s"},
		},
		{
			name:     "a timeout not shorter than the interval",
			ann:      withKind("tcp", map[string]string{"ferrolb.io/health-check-timeout": "5s"}),
			problems: []string{"metadata.annotations[ferrolb.io/health-check-timeout]: the timeout (5s) must be shorter than the interval (5s)"},
		},
		{
			name:     "an interval not longer than the default timeout",
			ann:      withKind("tcp", map[string]string{"ferrolb.io/health-check-interval": "1s"}),
			problems: []string{"metadata.annotations[ferrolb.io/health-check-interval]: the timeout (2s) must be shorter than the interval (1s)"},
		},
		{
			name: "thresholds and port",
			ann: withKind("tcp", map[string]string{"ferrolb.io/health-check-healthy-threshold": "0",
				"ferrolb.io/health-check-unhealthy-threshold": "many", "ferrolb.io/health-check-port": "70000"}),
			problems: []string{
				`metadata.annotations[ferrolb.io/health-check-healthy-threshold]: "0" is not a whole number from 1 to 10`,
				`metadata.annotations[ferrolb.io/health-check-unhealthy-threshold]: "many" is not a whole number from 1 to 10`,
				`metadata.annotations[ferrolb.io/health-check-port]: "70000" is not a port number from 1 to 65535`,
			},
		},
		{
			// An attacker's path: a line break would end the request line and add headers.
			name:     "a path that would write headers",
			ann:      withKind("http", map[string]string{"ferrolb.io/health-check-path": "/x\r\nHost: internal.example"}),
			problems: []string{`metadata.annotations[ferrolb.io/health-check-path]: "/x\r\nHost: internal.example" has a space, a control character`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", Annotations: tc.ann}}
			got, on, problems := config.ServiceHealthCheck(svc)
			if got != tc.want || on != tc.on {
				t.Errorf("got %+v on %v, want %+v on %v", got, on, tc.want, tc.on)
			}
			if len(problems) != len(tc.problems) {
				t.Fatalf("problems %q, want %q", problems, tc.problems)
			}
			for i, p := range problems {
				if !strings.HasPrefix(p.Error(), tc.problems[i]) {
					t.Errorf("problem %q, want %q...", p.Error(), tc.problems[i])
				}
				if !on && !strings.HasSuffix(p.Error(), "without active health checks") && !strings.Contains(p.Error(), "ignored") {
					t.Errorf("problem %q does not say what happens", p.Error())
				}
			}
		})
	}
}
