package vklogr

import "testing"

func TestVKLoggerWithNilError(t *testing.T) {
	var l vkLogger
	l.WithError(nil).WithField("k", "v").Info("no panic")
}
