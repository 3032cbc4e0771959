// Package e2e holds the end-to-end tests: they run against a real lab (package lab) that
// TestMain brings up once and tears down at the end, even when a test fails.
//
// They need the tools of hack/tools.sh in VK8S_TOOLS_DIR, which `make test` sets; with
// -short they are skipped.
package e2e
