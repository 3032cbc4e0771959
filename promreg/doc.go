// Package promreg registers vk8s' Prometheus collectors. A process may build a part twice
// (the e2e tests start a provider per test in one process, on controller-runtime's one
// registry): the second one shares the collectors the first registered, instead of
// failing or counting into collectors nobody exports.
//
// # Gauges computed at scrape
//
// Gauges reports what a part already keeps (informer caches, queue lengths) when it is
// scraped, instead of a count kept in step by hand; the part built last sets its function.
package promreg
