package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestFullName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{in: "pause:3.10", want: "docker.io/library/pause:3.10"},
		{in: "hoptrace/hoptrace", want: "docker.io/hoptrace/hoptrace:latest"},
		{in: "hoptrace/hoptrace:dev", want: "docker.io/hoptrace/hoptrace:dev"},
		{in: "localhost/x:1", want: "localhost/x:1"},
		{in: "registry.k8s.io/pause:3.10", want: "registry.k8s.io/pause:3.10"},
		{in: "localhost:5000/a/b", want: "localhost:5000/a/b:latest"},
		{in: "", bad: true},
		{in: "a@sha256:00", bad: true},
		{in: "Upper/case", bad: true},
		{in: "x:", bad: true},
	} {
		got, err := FullName(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("FullName(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("FullName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func rootfs(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "usr", "local", "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "app"), []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// readArchive returns the archive's files by name.
func readArchive(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
	}
}

type indexJSON struct {
	Manifests []struct {
		MediaType   string
		Digest      string
		Annotations map[string]string
	}
}

func TestSinglePlatformArchive(t *testing.T) {
	root := rootfs(t, "#!/bin/true\n")
	spec := Spec{Name: "hoptrace/test:dev", Platforms: []Platform{{OS: "linux", Arch: "amd64", Root: root}}, Entrypoint: []string{"/usr/local/bin/app"}}
	img, idx, err := Build(spec)
	if err != nil || img == nil || idx != nil {
		t.Fatalf("Build = %v, %v, %v; want one image", img, idx, err)
	}
	var buf bytes.Buffer
	if err := WriteArchive(&buf, spec.Name, img, nil); err != nil {
		t.Fatal(err)
	}
	files := readArchive(t, buf.Bytes())
	for _, name := range []string{"oci-layout", "index.json", "manifest.json"} {
		if _, ok := files[name]; !ok {
			t.Errorf("archive lacks %s", name)
		}
	}
	var idxFile indexJSON
	if err := json.Unmarshal(files["index.json"], &idxFile); err != nil {
		t.Fatal(err)
	}
	if len(idxFile.Manifests) != 1 {
		t.Fatalf("index.json has %d manifests, want 1", len(idxFile.Manifests))
	}
	m := idxFile.Manifests[0]
	if m.Annotations[annotationImageName] != "docker.io/hoptrace/test:dev" || m.Annotations[annotationRefName] != "dev" {
		t.Errorf("annotations = %v", m.Annotations)
	}
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("media type %s", m.MediaType)
	}
	d, _ := img.Digest()
	if m.Digest != d.String() {
		t.Errorf("index names %s, image is %s", m.Digest, d)
	}
	var dm []struct{ Config, RepoTags, Layers any }
	if err := json.Unmarshal(files["manifest.json"], &dm); err != nil || len(dm) != 1 {
		t.Fatalf("manifest.json: %v %s", err, files["manifest.json"])
	}

	// The one layer holds the tree, owned by root, with parents first.
	layers, _ := img.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	ld, _ := layers[0].Digest()
	gz, err := gzip.NewReader(bytes.NewReader(files["blobs/sha256/"+ld.Hex]))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: uid %d gid %d mtime %v", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		names = append(names, h.Name)
	}
	want := []string{"usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/app"}
	if len(names) != len(want) {
		t.Fatalf("layer entries %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("layer entries %v, want %v", names, want)
		}
	}

	// Same inputs, same digest: builds are reproducible.
	img2, _, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	if d2, _ := img2.Digest(); d2 != d {
		t.Errorf("rebuild digest %s != %s", d2, d)
	}
}

func TestMultiPlatformArchive(t *testing.T) {
	spec := Spec{Name: "hoptrace/test:dev", Platforms: []Platform{
		{OS: "linux", Arch: "amd64", Root: rootfs(t, "amd64")},
		{OS: "linux", Arch: "arm64", Root: rootfs(t, "arm64")},
	}}
	img, idx, err := Build(spec)
	if err != nil || img != nil || idx == nil {
		t.Fatalf("Build = %v, %v, %v; want an index", img, idx, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 || im.Manifests[0].Platform.Architecture != "amd64" || im.Manifests[1].Platform.Architecture != "arm64" {
		t.Fatalf("index manifests: %+v", im.Manifests)
	}
	var buf bytes.Buffer
	if err := WriteArchive(&buf, spec.Name, nil, idx); err != nil {
		t.Fatal(err)
	}
	files := readArchive(t, buf.Bytes())
	if _, ok := files["manifest.json"]; ok {
		t.Error("multi-platform archive has a Docker manifest.json, which can name only one platform")
	}
	var idxFile indexJSON
	if err := json.Unmarshal(files["index.json"], &idxFile); err != nil {
		t.Fatal(err)
	}
	if idxFile.Manifests[0].MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Errorf("top media type %s", idxFile.Manifests[0].MediaType)
	}
	for _, m := range im.Manifests {
		if _, ok := files["blobs/sha256/"+m.Digest.Hex]; !ok {
			t.Errorf("blob of %s manifest missing", m.Platform.Architecture)
		}
	}

	if _, _, err := Build(Spec{Name: "x", Platforms: []Platform{{OS: "linux", Arch: "amd64", Root: t.TempDir()}, {OS: "linux", Arch: "amd64", Root: t.TempDir()}}}); err == nil {
		t.Error("a platform given twice was accepted")
	}
}

func TestParsePlatform(t *testing.T) {
	p, err := ParsePlatform("linux/arm64/v8")
	if err != nil || p.OS != "linux" || p.Arch != "arm64" || p.Variant != "v8" || p.String() != "linux/arm64/v8" {
		t.Errorf("ParsePlatform = %+v, %v", p, err)
	}
	for _, bad := range []string{"linux", "/amd64", "a/b/c/d", ""} {
		if _, err := ParsePlatform(bad); err == nil {
			t.Errorf("ParsePlatform(%q) accepted", bad)
		}
	}
}
