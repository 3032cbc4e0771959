/*
Copyright The vk8s Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package siteadm

import (
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/vk8s-io/vk8s/sitereg"
)

// Causes of a refused join or leave (Error.Cause).
const (
	CauseInvalid         = "Invalid"
	CauseUnreachable     = "Unreachable"
	CauseTLS             = "TLSError"
	CauseUnauthorized    = "Unauthorized"
	CauseForbidden       = "Forbidden"
	CauseNameTaken       = "NameTaken"
	CauseJoinedElsewhere = "JoinedElsewhere"
	CauseLeftovers       = "Leftovers"
	CauseNotFound        = "NotFound"
	CausePodsRunning     = "PodsRunning"
	CauseNotConnected    = "NotConnected"
)

// Error is a refusal of join or leave: its cause, and a message that says what is wrong
// and how to fix it.
type Error struct {
	Cause   string
	Message string
	err     error
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.err }

func newError(cause string, err error, format string, args ...any) *Error {
	return &Error{Cause: cause, Message: fmt.Sprintf(format, args...), err: err}
}

// CauseOf returns the cause of the Error err wraps, or "".
func CauseOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Cause
	}
	return ""
}

// siteFailure classifies err, from a call to the site's API server at server made with
// the site administrator's kubeconfig while doing what, into an Error naming the cause
// and the fix.
func siteFailure(server, what string, err error) error {
	var e *Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e):
		return err
	case apierrors.IsUnauthorized(err):
		return newError(CauseUnauthorized, err,
			"the site's API server at %s refused the credentials of the site kubeconfig (401 Unauthorized) while %s: "+
				"pass the kubeconfig of the site's administrator (--site-kubeconfig) with a valid token or client certificate", server, what)
	case apierrors.IsForbidden(err):
		return newError(CauseForbidden, err,
			"the site kubeconfig's user may not do what joining needs at %s (403 Forbidden while %s: %v): "+
				"pass the kubeconfig of the site's administrator (cluster-admin): joining creates a ServiceAccount, a ClusterRole and a ClusterRoleBinding there",
			server, what, apierrors.ReasonForError(err))
	case sitereg.IsTLSError(err):
		return newError(CauseTLS, err,
			"TLS with the site's API server at %s failed while %s: %v: check certificate-authority-data and the server name in the site kubeconfig",
			server, what, rootCause(err))
	case sitereg.IsUnreachable(err):
		return newError(CauseUnreachable, err,
			"cannot reach the site's API server at %s while %s: %v: check the server address in the site kubeconfig, "+
				"that this machine (and the host's provider) can reach it, and that the site's API server runs", server, what, rootCause(err))
	default:
		return fmt.Errorf("%s on the site at %s: %w", what, server, err)
	}
}

// rootCause is the innermost error of err's chain: the network or TLS failure without the
// URL and verb client-go wraps around it.
func rootCause(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}
