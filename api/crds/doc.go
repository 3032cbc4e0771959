// Package crds embeds the CustomResourceDefinitions of the vk8s.io API, generated from
// api/v1alpha1 by controller-gen (make generate), so the lab and the tests install exactly
// what the chart ships.
package crds
