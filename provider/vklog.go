package provider

import (
	"fmt"

	"github.com/go-logr/logr"
	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
)

// vkLogger adapts logr to virtual-kubelet's logger, whose default discards everything:
// without it, the NodeControllers' errors would not be seen. Debug goes to V(1).
type vkLogger struct{ l logr.Logger }

var _ vklog.Logger = vkLogger{}

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
