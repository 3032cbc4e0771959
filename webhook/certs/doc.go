// Package certs is the webhook's self-managed certificate authority: it creates a CA and a
// serving certificate in memory, serves the certificate through tls.Config's
// GetCertificate (so a new one takes effect on the next handshake, without a restart), and
// rotates both before they expire.
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
