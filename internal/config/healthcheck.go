package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/ferrolb/ferrolb/internal/healthcheck"
)

// The annotations of a Service's active health checks (with --datapath=xdp: the speakers
// probe its endpoints from the nodes and send no new flows to those that fail).
const (
	AnnotationHealthCheck                   = "ferrolb.io/health-check"
	AnnotationHealthCheckPath               = "ferrolb.io/health-check-path"
	AnnotationHealthCheckPort               = "ferrolb.io/health-check-port"
	AnnotationHealthCheckInterval           = "ferrolb.io/health-check-interval"
	AnnotationHealthCheckTimeout            = "ferrolb.io/health-check-timeout"
	AnnotationHealthCheckHealthyThreshold   = "ferrolb.io/health-check-healthy-threshold"
	AnnotationHealthCheckUnhealthyThreshold = "ferrolb.io/health-check-unhealthy-threshold"
)

// healthCheckSettings are the annotations that tune a check, all ignored without
// AnnotationHealthCheck.
var healthCheckSettings = []string{
	AnnotationHealthCheckPath, AnnotationHealthCheckPort, AnnotationHealthCheckInterval, AnnotationHealthCheckTimeout,
	AnnotationHealthCheckHealthyThreshold, AnnotationHealthCheckUnhealthyThreshold,
}

// HealthCheck is a Service's active health check.
type HealthCheck struct {
	Check healthcheck.Check
	// Port is where the endpoints are probed; 0: each endpoint's own port (the Service
	// port's targetPort).
	Port uint16
}

// noChecks ends the reason of a value that turns the checks off: a typo must never cost a
// Service its endpoints.
const noChecks = "; the Service is served without active health checks"

// ServiceHealthCheck reads a Service's health check annotations. on is false when the
// Service asks for none, or when a value is invalid: then problems say which and why, and
// the Service is served on its ready endpoints alone. A value that is merely ignored (a
// path on a TCP check) is a problem too, and the check still runs.
func ServiceHealthCheck(svc *corev1.Service) (hc HealthCheck, on bool, problems []FieldError) {
	ann := svc.Annotations
	kind, set := ann[AnnotationHealthCheck]
	if !set {
		for _, a := range healthCheckSettings {
			if _, ok := ann[a]; ok {
				problems = append(problems, FieldError{annotationPath(a),
					fmt.Sprintf("ignored: %s is not set (tcp or http turns the checks on)", AnnotationHealthCheck)})
			}
		}
		return HealthCheck{}, false, problems
	}
	k, err := healthcheck.ParseKind(strings.TrimSpace(kind))
	if err != nil {
		return HealthCheck{}, false, []FieldError{{annotationPath(AnnotationHealthCheck), err.Error() + noChecks}}
	}
	hc.Check = healthcheck.Default(k)
	off := false
	bad := func(name, why string) {
		problems = append(problems, FieldError{annotationPath(name), why + noChecks})
		off = true
	}
	duration := func(name string, min, max time.Duration, to *time.Duration) {
		v, ok := ann[name]
		if !ok {
			return
		}
		d, err := time.ParseDuration(strings.TrimSpace(v))
		switch {
		case err != nil:
			bad(name, fmt.Sprintf("%q is not a duration (such as 5s or 500ms)", v))
		case d < min || d > max:
			bad(name, fmt.Sprintf("%v is not within %v and %v", d, min, max))
		default:
			*to = d
		}
	}
	threshold := func(name string, to *int) {
		v, ok := ann[name]
		if !ok {
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > healthcheck.MaxThreshold {
			bad(name, fmt.Sprintf("%q is not a whole number from 1 to %d", v, healthcheck.MaxThreshold))
			return
		}
		*to = n
	}
	duration(AnnotationHealthCheckInterval, healthcheck.MinInterval, healthcheck.MaxInterval, &hc.Check.Interval)
	duration(AnnotationHealthCheckTimeout, healthcheck.MinTimeout, healthcheck.MaxInterval, &hc.Check.Timeout)
	threshold(AnnotationHealthCheckHealthyThreshold, &hc.Check.HealthyThreshold)
	threshold(AnnotationHealthCheckUnhealthyThreshold, &hc.Check.UnhealthyThreshold)
	if v, ok := ann[AnnotationHealthCheckPort]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > 65535 {
			bad(AnnotationHealthCheckPort, fmt.Sprintf("%q is not a port number from 1 to 65535", v))
		} else {
			hc.Port = uint16(n)
		}
	}
	if p, ok := ann[AnnotationHealthCheckPath]; ok {
		switch {
		case k != healthcheck.HTTP:
			problems = append(problems, FieldError{annotationPath(AnnotationHealthCheckPath), "ignored: only http checks have a path"})
		case healthcheck.ValidatePath(p) != nil:
			bad(AnnotationHealthCheckPath, healthcheck.ValidatePath(p).Error())
		default:
			hc.Check.Path = p
		}
	}
	if off {
		return HealthCheck{}, false, problems
	}
	if hc.Check.Timeout >= hc.Check.Interval {
		// Reported on the annotation that was set (the other is the default).
		name := AnnotationHealthCheckTimeout
		if _, ok := ann[name]; !ok {
			name = AnnotationHealthCheckInterval
		}
		bad(name, fmt.Sprintf("the timeout (%v) must be shorter than the interval (%v): a probe ends before the next starts, "+
			"so that an endpoint that stops answering is out within 3 intervals", hc.Check.Timeout, hc.Check.Interval))
		return HealthCheck{}, false, problems
	}
	if err := hc.Check.Validate(); err != nil { // every bound is checked above; this is a safety net
		bad(AnnotationHealthCheck, err.Error())
		return HealthCheck{}, false, problems
	}
	return hc, true, problems
}
