// Package kwokconfig renders the configuration of the lab's clusters: kwokctl's
// KwokctlConfiguration of the host and of each site (binary runtime, local binaries,
// component flags), the kwok Stage and simulated resource metrics of the sites, and the tar
// shim of their exec. It is pure: package lab writes the files and runs the processes.
package kwokconfig
