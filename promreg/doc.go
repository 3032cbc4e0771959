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

// Package promreg registers vk8s' Prometheus collectors. A process may build a part twice
// (the e2e tests start a provider per test in one process, on controller-runtime's one
// registry): the second one shares the collectors the first registered, instead of
// failing or counting into collectors nobody exports.
//
// # Gauges computed at scrape
//
// Gauges reports what a part already keeps (informer caches, queue lengths) when it is
// scraped, instead of a count kept in step by hand; the part built last sets its function.
//
// # Profiles
//
// Profiling gives the metrics server Go's profiles (net/http/pprof), for a process's
// --profiling.
package promreg
