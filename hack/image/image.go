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

package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image holds and how it runs.
const (
	// binaryPath is the binary in the image, its entrypoint.
	binaryPath = "vk8s"
	// licensePath is the project's LICENSE in the image (Apache-2.0 asks that it goes with
	// every copy).
	licensePath = "licenses/LICENSE"
	// user is distroless' nonroot, as numbers: the image has no /etc/passwd, and the kubelet
	// checks runAsNonRoot against a number.
	user = "65532:65532"
)

// errNoPlatform is returned when no platform is asked for.
var errNoPlatform = errors.New("no platform")

// options are the inputs of one build; the same options give the same index, byte for byte.
type options struct {
	root      string // the vk8s checkout
	goCmd     string
	version   string // main.version and org.opencontainers.image.version
	revision  string
	source    string
	created   time.Time // every timestamp: the files, the config, the history
	platforms []v1.Platform
}

// labels are the OCI labels of every image config, also the annotations of the index and its
// manifests.
func (o options) labels() map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "vk8s",
		"org.opencontainers.image.description": "vk8s federates Kubernetes sites into one host cluster (virtual-kubelet provider, admission webhook)",
		"org.opencontainers.image.source":      o.source,
		"org.opencontainers.image.version":     o.version,
		"org.opencontainers.image.revision":    o.revision,
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.created":     o.created.Format(time.RFC3339),
	}
}

// build compiles vk8s for every platform and returns their images in one OCI index. The
// layers are files in work, read until the index is written.
func build(ctx context.Context, o options, work string) (v1.ImageIndex, error) {
	if len(o.platforms) == 0 {
		return nil, errNoPlatform
	}
	license, err := os.ReadFile(filepath.Join(o.root, "LICENSE"))
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range o.platforms {
		dir := filepath.Join(work, p.OS+"-"+p.Architecture+p.Variant)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, err
		}
		bin, err := compile(ctx, o, p, dir)
		if err != nil {
			return nil, err
		}
		img, err := image(o, p, bin, license, dir)
		if err != nil {
			return nil, fmt.Errorf("image for %s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	return mutate.Annotations(idx, o.labels()).(v1.ImageIndex), nil
}

// compile builds the static binary for p into dir, as make build does, less the lab's tools
// folder (a path of the build machine). -buildvcs=false: Go would stamp whether any file,
// even an untracked one, differs from the commit, and so change the digest of one commit;
// the revision is in the labels and the version.
func compile(ctx context.Context, o options, p v1.Platform, dir string) (string, error) {
	out := filepath.Join(dir, "vk8s")
	cmd := exec.CommandContext(ctx, o.goCmd, "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -X main.version="+o.version, "-o", out, "./cmd/vk8s")
	cmd.Dir = o.root
	// The microarchitecture levels are pinned to Go's defaults so that an environment's
	// GOAMD64 or GOARM64 changes neither the digest nor the machines the image runs on.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture,
		"GOAMD64=v1", "GOARM64=v8.0")
	if p.Architecture == "arm" {
		cmd.Env = append(cmd.Env, "GOARM="+map[string]string{"v6": "6", "v7": "7"}[p.Variant])
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build for %s: %w", p, err)
	}
	return out, nil
}

// image makes the image of one platform: a layer with the binary and the license on no base.
func image(o options, p v1.Platform, bin string, license []byte, dir string) (v1.Image, error) {
	layerFile := filepath.Join(dir, "layer.tar.gz")
	if err := writeLayer(layerFile, bin, license, o.created); err != nil {
		return nil, err
	}
	// The file is gzip already: its digest is the file's, with no compression by the library.
	layer, err := tarball.LayerFromFile(layerFile, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: o.created}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		Variant:      p.Variant,
		Created:      created,
		Config: v1.Config{
			Entrypoint: []string{"/" + binaryPath},
			User:       user,
			WorkingDir: "/",
			Labels:     o.labels(),
		},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: created, CreatedBy: "make image (hack/image)", Comment: "vk8s " + o.version},
	})
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, o.labels()).(v1.Image), nil
}

// writeLayer writes the gzip tar of the layer: the binary, the license and their folder,
// owned by root (the user cannot change them), every time t.
func writeLayer(path, bin string, license []byte, t time.Time) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	// No name, no time in the gzip header: gzip.Writer leaves them empty.
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	b, err := os.Open(bin)
	if err != nil {
		return err
	}
	defer func() { _ = b.Close() }() // read only
	st, err := b.Stat()
	if err != nil {
		return err
	}
	hdr := func(name string, mode int64, typ byte, size int64) *tar.Header {
		return &tar.Header{Name: name, Mode: mode, Typeflag: typ, Size: size, ModTime: t, Format: tar.FormatPAX}
	}
	if err := tw.WriteHeader(hdr(filepath.Dir(licensePath)+"/", 0o755, tar.TypeDir, 0)); err != nil {
		return err
	}
	if err := tw.WriteHeader(hdr(licensePath, 0o644, tar.TypeReg, int64(len(license)))); err != nil {
		return err
	}
	if _, err := tw.Write(license); err != nil {
		return err
	}
	if err := tw.WriteHeader(hdr(binaryPath, 0o755, tar.TypeReg, st.Size())); err != nil {
		return err
	}
	if _, err := io.Copy(tw, b); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// write puts the index into out as an OCI layout (out/oci, named ref for containerd, docker
// and skopeo) and one docker-archive per platform (out/vk8s-OS-ARCH.tar, tagged ref), and
// returns their paths. It replaces what an earlier build left there.
func write(out string, ref name.Tag, idx v1.ImageIndex) ([]string, error) {
	dir := filepath.Join(out, "oci")
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return nil, err
	}
	err = lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          ref.String(),
		"org.opencontainers.image.ref.name": ref.TagStr(),
	}))
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	files := []string{dir}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, err
		}
		f := filepath.Join(out, archiveName(*d.Platform))
		if err := tarball.WriteToFile(f, ref, img); err != nil {
			return nil, fmt.Errorf("docker archive %s: %w", f, err)
		}
		files = append(files, f)
	}
	return files, nil
}

// archiveName is the file name of the docker-archive of platform p.
func archiveName(p v1.Platform) string {
	n := "vk8s-" + p.OS + "-" + p.Architecture
	if p.Variant != "" {
		n += "-" + p.Variant
	}
	return n + ".tar"
}
