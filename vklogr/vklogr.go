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

// Package vklogr adapts logr, the logger of vk8s, controller-runtime and client-go, to
// virtual-kubelet's log.Logger, so that virtual-kubelet's controllers log through the
// process's one structured logger.
package vklogr

import (
	"fmt"

	"github.com/go-logr/logr"
	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
)

// New returns virtual-kubelet's logger writing to l: virtual-kubelet's default discards
// everything, and without it the PodController's errors would not
// be seen. Debug goes to V(1), warnings to Info with level=warning, Fatal to Error (a
// library must not end the process).
func New(l logr.Logger) vklog.Logger { return vkLogger{l} }

// vkLogger adapts logr to virtual-kubelet's logger.
type vkLogger struct{ l logr.Logger }

func (v vkLogger) Debug(args ...any)            { v.l.V(1).Info(fmt.Sprint(args...)) }
func (v vkLogger) Debugf(f string, args ...any) { v.l.V(1).Info(fmt.Sprintf(f, args...)) }
func (v vkLogger) Info(args ...any)             { v.l.Info(fmt.Sprint(args...)) }
func (v vkLogger) Infof(f string, args ...any)  { v.l.Info(fmt.Sprintf(f, args...)) }
func (v vkLogger) Warn(args ...any)             { v.l.Info(fmt.Sprint(args...), "level", "warning") }
func (v vkLogger) Warnf(f string, args ...any) {
	v.l.Info(fmt.Sprintf(f, args...), "level", "warning")
}
func (v vkLogger) Error(args ...any)            { v.l.Error(nil, fmt.Sprint(args...)) }
func (v vkLogger) Errorf(f string, args ...any) { v.l.Error(nil, fmt.Sprintf(f, args...)) }

// Fatal and Fatalf log as errors: a library must not end the process.
func (v vkLogger) Fatal(args ...any)            { v.Error(args...) }
func (v vkLogger) Fatalf(f string, args ...any) { v.Errorf(f, args...) }

func (v vkLogger) WithField(k string, val any) vklog.Logger {
	return vkLogger{v.l.WithValues(k, val)}
}

func (v vkLogger) WithFields(fields vklog.Fields) vklog.Logger {
	kv := make([]any, 0, 2*len(fields))
	for k, val := range fields {
		kv = append(kv, k, val)
	}
	return vkLogger{v.l.WithValues(kv...)}
}

func (v vkLogger) WithError(err error) vklog.Logger {
	if err == nil {
		return v
	}
	return vkLogger{v.l.WithValues("error", err.Error())}
}
