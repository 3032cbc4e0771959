// Package e2e holds the end-to-end tests: they run against a real lab (package lab) that
// TestMain brings up once and tears down at the end, even when a test fails. The provider
// and the webhook run in the test process; TestMain builds the vk8s binary for the lab's
// kubelet relay. e2e/bench is the benchmark (make bench). Nothing here is linked into the
// product.
//
// They need the tools of hack/tools.sh in VK8S_TOOLS_DIR, which `make test` sets; with
// -short they are skipped.
package e2e
