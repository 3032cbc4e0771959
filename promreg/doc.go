// Package promreg registers vk8s' Prometheus collectors. A process may build a part twice
// (the e2e tests start a provider per test in one process, on controller-runtime's one
// registry): the second one shares the collectors the first registered, instead of
// failing or counting into collectors nobody exports.
package promreg
