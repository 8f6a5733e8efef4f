package controller

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ferrolb/ferrolb/internal/l2/member"
)

// MemberKey is the key of the heartbeat Secret that holds the key the speakers sign their
// heartbeats with (the DaemonSet mounts it and passes the file to --member-key-file).
const MemberKey = "key"

// memberSecret makes the heartbeat Secret with a random key when it does not exist, so that an
// install without Helm (deploy/ferrolb.yaml) signs heartbeats too; MetalLB's controller does
// the same for its memberlist Secret. It never changes a Secret that exists: the speakers
// running hold its key, and another key would make them see each other dead. It runs once
// per leadership, on the leader only, and reads the Secret by name (no list, no watch: the
// controller cannot read the namespace's other Secrets, such as BGP MD5 passwords).
type memberSecret struct {
	reader          client.Reader // uncached (the manager's API reader): a cached get would list and watch every Secret
	writer          client.Writer
	namespace, name string
	// retry is the first wait after a failure; it doubles up to a minute.
	retry time.Duration
}

// NeedLeaderElection: only the leader makes the Secret (two racing would both be safe, as
// create fails on an existing one, but one is enough).
func (m *memberSecret) NeedLeaderElection() bool { return true }

// Start makes the Secret if needed, retrying failures (the API server away, the namespace
// being created) until it exists or ctx ends. It returns nil either way: a missing key keeps
// the speakers from starting, which they report themselves, and must not stop the allocator.
func (m *memberSecret) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithValues("secret", m.namespace+"/"+m.name)
	wait := m.retry
	for {
		err := m.ensure(ctx, log)
		if err == nil {
			return nil
		}
		log.Error(err, "heartbeat key Secret; retrying", "after", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}

// ensure gets the Secret and creates it when it is absent.
func (m *memberSecret) ensure(ctx context.Context, log logr.Logger) error {
	var s corev1.Secret
	err := m.reader.Get(ctx, client.ObjectKey{Namespace: m.namespace, Name: m.name}, &s)
	switch {
	case err == nil:
		if k := bytes.TrimSpace(s.Data[MemberKey]); len(k) < member.MinKeyLength {
			// The speakers refuse it and say so; the controller adds its view, and leaves
			// the Secret to its owner.
			log.Error(fmt.Errorf("key %q has %d bytes, want at least %d", MemberKey, len(k), member.MinKeyLength),
				"heartbeat key Secret exists, left as it is, but speakers given it refuse to start")
			return nil
		}
		log.Info("heartbeat key Secret exists; left as it is")
		return nil
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("get: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return err
	}
	s = corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: m.namespace,
			Name:      m.name,
			Labels:    map[string]string{"app.kubernetes.io/name": "ferrolb", "app.kubernetes.io/component": "speaker"},
			Annotations: map[string]string{"ferrolb.io/created-by": "ferrolb-controller: the key that signs the speakers' heartbeats; " +
				"made because it was absent, never changed by the controller"},
		},
		Type: corev1.SecretTypeOpaque,
		// The same form as the chart's and `openssl rand -base64 32`: 32 random bytes in
		// base64, whose 44 characters are the key.
		Data: map[string][]byte{MemberKey: []byte(base64.StdEncoding.EncodeToString(raw))},
	}
	switch err := m.writer.Create(ctx, &s); {
	case apierrors.IsAlreadyExists(err):
		log.Info("heartbeat key Secret made by someone else meanwhile; left as it is")
		return nil
	case err != nil:
		return fmt.Errorf("create: %w", err)
	}
	log.Info("created the heartbeat key Secret with a random key")
	return nil
}
