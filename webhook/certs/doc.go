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

// Package certs is the webhook's self-managed certificate authority: it keeps a CA in a
// Store, signs a serving certificate with it, serves the certificate through tls.Config's
// GetCertificate (so a new one takes effect on the next handshake, without a restart), and
// rotates both before they expire.
//
// # One CA for every replica
//
// The API server trusts the CA bundle in the webhook configurations, whichever replica
// wrote it last, and calls any replica behind the Service. So every replica must serve a
// certificate of that bundle: the CAs live in a Store that all replicas read
// (SecretStore: a Secret of the host, written with optimistic concurrency; MemoryStore:
// one process). Each replica signs its own serving certificate; the first replica creates
// the CA; the one that renews it first stores the new CA and the others load it when they
// read the Store again (Config.ReloadInterval).
//
// # Rotation without admission errors
//
// The API server trusts the webhook through the caBundle of its webhook configurations,
// which the Authority hands to a Publish function (the webhook writes it into its own
// configurations). A serving certificate is renewed when a third of its lifetime remains,
// signed by the current CA, so the bundle does not change. A CA is renewed the same way,
// in three steps: the new CA is published together with the old one; after
// Config.PropagationDelay, long enough for the API server to see the new bundle, the
// serving certificate is re-issued by the new CA; the old CA leaves the bundle when it
// expires. At every moment the certificate being served is signed by a CA the API server
// trusts.
//
// # Lifetimes
//
// Config.CALifetime (default one year) and Config.CertLifetime (default 30 days) are
// configurable so tests can rotate in seconds. A serving certificate never outlives the
// CA that signed it.
package certs
