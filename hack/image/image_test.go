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
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"log"
	"maps"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestImage builds the image the way make image does, twice, and checks what a cluster
// runs: the index of both platforms, each image's config, its one layer, the binary in it
// (static, run when it is this machine's), the docker archives, the same digest from both
// builds, and the push of the second build.
func TestImage(t *testing.T) {
	ctx := t.Context()
	root := filepath.Join("..", "..")
	created := time.Unix(1700000000, 0).UTC()
	const version, revision = "v0.0.0-test", "0123456789abcdef0123456789abcdef01234567"
	args := func(out string) []string {
		return []string{"-root", root, "-version", version, "-revision", revision,
			"-created", strconv.FormatInt(created.Unix(), 10), "-out", out}
	}

	out := t.TempDir()
	var stdout bytes.Buffer
	if err := run(ctx, append(args(out), "-image", "example.test/vk8s", "-tag", "t1"), &stdout); err != nil {
		t.Fatalf("run: %v\n%s", err, stdout.String())
	}
	t.Logf("make image:\n%s", stdout.String())

	// The OCI layout: one index, named for containerd and docker.
	top, err := layout.ImageIndexFromPath(filepath.Join(out, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	tm, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.Manifests) != 1 || tm.Manifests[0].MediaType != types.OCIImageIndex {
		t.Fatalf("layout index.json: %+v, want one OCI image index", tm.Manifests)
	}
	if got := tm.Manifests[0].Annotations; got["io.containerd.image.name"] != "example.test/vk8s:t1" || got["org.opencontainers.image.ref.name"] != "t1" {
		t.Errorf("layout names %v, want example.test/vk8s:t1 and t1", got)
	}
	digest := tm.Manifests[0].Digest
	if !strings.Contains(stdout.String(), "digest  "+digest.String()) {
		t.Errorf("make image printed\n%s\nwithout the digest %s", stdout.String(), digest)
	}
	idx, err := top.ImageIndex(digest)
	if err != nil {
		t.Fatal(err)
	}

	license, err := os.ReadFile(filepath.Join(root, "LICENSE"))
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{
		"org.opencontainers.image.source":   "https://github.com/vk8s-io/vk8s",
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.revision": revision,
		"org.opencontainers.image.licenses": "Apache-2.0",
		"org.opencontainers.image.created":  "2023-11-14T22:13:20Z",
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	checkLabels(t, "index annotations", im.Annotations, wantLabels)
	var platforms []string
	for _, d := range im.Manifests {
		platforms = append(platforms, d.Platform.String())
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(d.Platform.String(), func(t *testing.T) {
			checkImage(t, img, *d.Platform, created, wantLabels, license, version)
			checkArchive(t, filepath.Join(out, "vk8s-linux-"+d.Platform.Architecture+".tar"), img)
		})
	}
	if got := strings.Join(platforms, ","); got != "linux/amd64,linux/arm64" {
		t.Errorf("platforms %s, want linux/amd64,linux/arm64", got)
	}

	// Again, under another name and pushed: the same index, byte for byte.
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no credentials of this machine's user
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	repo := strings.TrimPrefix(reg.URL, "http://") + "/vk8s"
	stdout.Reset()
	if err := run(ctx, append(args(t.TempDir()), "-image", repo, "-tag", "t2", "-push"), &stdout); err != nil {
		t.Fatalf("run -push: %v\n%s", err, stdout.String())
	}
	ref, err := name.NewTag(repo + ":t2")
	if err != nil {
		t.Fatal(err)
	}
	pushed, err := remote.Index(ref, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := pushed.Digest(); err != nil || got != digest {
		t.Errorf("second build, pushed: digest %s (%v), want the first build's %s", got, err, digest)
	}
}

// checkImage checks one platform's image: its manifest, its config and its one layer.
func checkImage(t *testing.T, img v1.Image, p v1.Platform, created time.Time, labels map[string]string, license []byte, version string) {
	t.Helper()
	if mt, err := img.MediaType(); err != nil || mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s (%v), want %s", mt, err, types.OCIManifestSchema1)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != p.OS || cfg.Architecture != p.Architecture {
		t.Errorf("config platform %s/%s, want %s", cfg.OS, cfg.Architecture, p)
	}
	uid, _, _ := strings.Cut(cfg.Config.User, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 || cfg.Config.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532 (numeric, not root)", cfg.Config.User)
	}
	if got := strings.Join(cfg.Config.Entrypoint, " "); got != "/vk8s" {
		t.Errorf("entrypoint %q, want /vk8s", got)
	}
	checkLabels(t, "config labels", cfg.Config.Labels, labels)
	if !cfg.Created.Equal(created) {
		t.Errorf("created %s, want %s", cfg.Created, created)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers (%v), want 1", len(layers), err)
	}
	if mt, err := layers[0].MediaType(); err != nil || mt != types.OCILayer {
		t.Errorf("layer media type %s (%v), want %s", mt, err, types.OCILayer)
	}
	files := readLayer(t, layers[0], created)
	if got := files["licenses/LICENSE"]; !bytes.Equal(got.data, license) || got.mode != 0o644 {
		t.Errorf("licenses/LICENSE: mode %o, %d bytes, want 644 and the checkout's LICENSE", got.mode, len(got.data))
	}
	bin, ok := files["vk8s"]
	if !ok || bin.mode != 0o755 {
		t.Fatalf("vk8s: present %v, mode %o, want 755", ok, bin.mode)
	}
	checkBinary(t, bin.data, p, version)
}

type file struct {
	mode int64
	data []byte
}

// readLayer returns the files of a layer by path, checking that root owns each and that
// each has the time of the build.
func readLayer(t *testing.T, l v1.Layer, created time.Time) map[string]file {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	files := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(created) {
			t.Errorf("%s: owner %d:%d, time %s, want 0:0 and %s", h.Name, h.Uid, h.Gid, h.ModTime, created)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = file{mode: h.Mode, data: data}
	}
	if len(files) != 3 {
		t.Errorf("layer files %v, want licenses/, licenses/LICENSE, vk8s", slices.Sorted(maps.Keys(files)))
	}
	return files
}

// checkBinary checks that the binary is a static executable of p and, on a machine of p,
// that it runs and tells its version.
func checkBinary(t *testing.T, data []byte, p v1.Platform, version string) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("vk8s is no ELF file: %v", err)
	}
	if want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[p.Architecture]; f.Machine != want {
		t.Errorf("ELF machine %s, want %s", f.Machine, want)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Errorf("vk8s has a program interpreter: it is not static")
		}
	}
	if runtime.GOOS != p.OS || runtime.GOARCH != p.Architecture {
		t.Logf("not running the %s binary on %s/%s", p, runtime.GOOS, runtime.GOARCH)
		return
	}
	bin := filepath.Join(t.TempDir(), "vk8s")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), bin, "version").CombinedOutput()
	if err != nil || string(out) != "vk8s "+version+"\n" {
		t.Errorf("vk8s version: %q, %v; want %q", out, err, "vk8s "+version+"\n")
	}
}

// checkArchive checks that the docker archive holds img under its tag: the same config and
// layer (its manifest is docker's, made by docker load).
func checkArchive(t *testing.T, path string, img v1.Image) {
	t.Helper()
	tag, err := name.NewTag("example.test/vk8s:t1")
	if err != nil {
		t.Fatal(err)
	}
	a, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatalf("docker archive %s: %v", path, err)
	}
	for _, get := range []func(v1.Image) (v1.Hash, error){
		v1.Image.ConfigName,
		func(i v1.Image) (v1.Hash, error) {
			ls, err := i.Layers()
			if err != nil || len(ls) != 1 {
				return v1.Hash{}, err
			}
			return ls[0].Digest()
		},
	} {
		got, err1 := get(a)
		want, err2 := get(img)
		if err1 != nil || err2 != nil || got != want {
			t.Errorf("docker archive: %s (%v), want %s (%v)", got, err1, want, err2)
		}
	}
}

func checkLabels(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s=%q, want %q", what, k, got[k], v)
		}
	}
}
