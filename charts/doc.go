// Package charts holds the Helm charts of vk8s (charts/vk8s) and their tests: chart_test.go
// renders the chart with the project's helm (hack/tools.sh) and checks it against the code,
// so that the two cannot drift: the webhook configurations and the kind policy against
// package webhook, the WorkloadFlavors against overrides.BuiltinFlavors, the CRDs against
// api/crds, the flags against the vk8s binary, the dashboard against the metrics the code
// registers. The e2e test TestChart installs it into the lab's host.
package charts
