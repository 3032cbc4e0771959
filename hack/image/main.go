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

// Command image builds the OCI image of vk8s without a container engine (make image): the
// binary cross-compiled per platform (static, -trimpath), one layer on no base image, a
// non-root user, OCI labels; an index of every platform, written as an OCI layout and as one
// docker-archive per platform (docker load, podman load, kind load image-archive), and
// pushed with -push. Same commit, same Go, same digest: every timestamp is -created.
//
// It is a module of its own so that go-containerregistry and its dependencies never enter
// the product's build list (they would raise golang.org/x/sys, x/sync and x/oauth2 there).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// run is make image: it parses args, builds, writes into -out, pushes with -push and reports
// on w.
func run(ctx context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	var (
		o         options
		image     = fs.String("image", "ghcr.io/vk8s-io/vk8s", "repository of the image")
		tag       = fs.String("tag", "", "tag of the image (default: -version)")
		platforms = fs.String("platforms", "linux/amd64,linux/arm64", "comma-separated platforms of the index")
		created   = fs.Int64("created", 0, "every timestamp of the image, in seconds since the epoch (SOURCE_DATE_EPOCH; make image passes the commit's time)")
		push      = fs.Bool("push", false, "also push the index to -image:-tag, with the credentials of the docker config")
	)
	fs.StringVar(&o.root, "root", ".", "the vk8s checkout to build")
	fs.StringVar(&o.goCmd, "go", "go", "the go command")
	fs.StringVar(&o.version, "version", "dev", "version stamped into the binary (main.version) and the labels")
	fs.StringVar(&o.revision, "revision", "", "commit of the build, for the labels")
	fs.StringVar(&o.source, "source", "https://github.com/vk8s-io/vk8s", "source repository, for the labels")
	out := fs.String("out", "bin/image", "folder for the OCI layout (oci/) and the docker archives (vk8s-OS-ARCH.tar)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *tag == "" {
		*tag = o.version
	}
	ref, err := name.NewTag(*image + ":" + *tag)
	if err != nil {
		return fmt.Errorf("image name: %w", err)
	}
	o.created = time.Unix(*created, 0).UTC()
	for p := range strings.SplitSeq(*platforms, ",") {
		pl, err := v1.ParsePlatform(strings.TrimSpace(p))
		if err != nil {
			return fmt.Errorf("platform %q: %w", p, err)
		}
		if pl.OS != "linux" {
			return fmt.Errorf("platform %q: only linux images are built", p)
		}
		o.platforms = append(o.platforms, *pl)
	}

	work, err := os.MkdirTemp("", "vk8s-image-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()
	idx, err := build(ctx, o, work)
	if err != nil {
		return err
	}
	files, err := write(*out, ref, idx)
	if err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "image   %s\ndigest  %s\n", ref, digest)
	m, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, d := range m.Manifests {
		fmt.Fprintf(w, "        %s %s\n", d.Platform, d.Digest)
	}
	for _, f := range files {
		fmt.Fprintf(w, "wrote   %s\n", f)
	}
	if *push {
		if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
		fmt.Fprintf(w, "pushed  %s@%s\n", ref, digest)
	}
	return nil
}
