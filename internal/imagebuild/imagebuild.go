// Package imagebuild writes container images without a container engine: each
// image is one layer made from a directory tree (typically a static binary and a
// few files), for one or more platforms, written as a tar archive that
// `ctr images import`, `kind load image-archive`, `docker load` and
// `podman load` all accept.
//
// hoptrace's machines have no Docker engine and no registry; its cluster tests
// import these archives straight into containerd.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Spec describes one image.
type Spec struct {
	// Name is the image reference, e.g. "hoptrace/hoptrace:dev". It is written in
	// full ("docker.io/hoptrace/hoptrace:dev") because that is what the kubelet
	// asks containerd for when a pod says "hoptrace/hoptrace:dev".
	Name string
	// Platforms holds one root filesystem per platform. Several make a
	// multi-platform image (an OCI image index).
	Platforms []Platform

	Entrypoint   []string
	Cmd          []string
	Env          []string
	WorkingDir   string
	User         string
	Labels       map[string]string
	ExposedPorts []string // "8080/tcp"

	// Created stamps the config and every file; the zero time means the Unix
	// epoch, so the same inputs give the same digests.
	Created time.Time
}

// Platform is one platform's root filesystem.
type Platform struct {
	OS      string // "linux"
	Arch    string // "amd64", "arm64", ...
	Variant string // "v8" for arm64, usually empty
	// Root is a directory whose tree becomes the image's only layer, owned by
	// root, with the modes it has on disk.
	Root string
}

func (p Platform) String() string {
	s := p.OS + "/" + p.Arch
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// ParsePlatform reads "os/arch[/variant]".
func ParsePlatform(s string) (Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return Platform{}, fmt.Errorf("platform %q: want os/arch[/variant]", s)
	}
	p := Platform{OS: parts[0], Arch: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// FullName normalizes a reference the way containerd and the kubelet do:
// "pause:3.10" is "docker.io/library/pause:3.10", "hoptrace/hoptrace" is
// "docker.io/hoptrace/hoptrace:latest". A digest reference is refused: the
// digest is the result of the build, not an input.
func FullName(ref string) (string, error) {
	if ref == "" || strings.ContainsAny(ref, " \t\n@") || strings.HasSuffix(ref, ":") || strings.HasPrefix(ref, "/") {
		return "", fmt.Errorf("image name %q: want [registry/]repository[:tag]", ref)
	}
	repo, tag := ref, "latest"
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		repo, tag = ref[:i], ref[i+1:]
	}
	if repo == "" {
		return "", fmt.Errorf("image name %q: no repository", ref)
	}
	first, _, hasSlash := strings.Cut(repo, "/")
	domain := hasSlash && (strings.ContainsAny(first, ".:") || first == "localhost")
	switch {
	case domain:
	case !hasSlash:
		repo = "docker.io/library/" + repo
	default:
		repo = "docker.io/" + repo
	}
	if repo != strings.ToLower(repo) {
		return "", fmt.Errorf("image name %q: repository must be lower case", ref)
	}
	return repo + ":" + tag, nil
}

// Build assembles the image (or, for several platforms, the image index).
func Build(spec Spec) (v1.Image, v1.ImageIndex, error) {
	if len(spec.Platforms) == 0 {
		return nil, nil, errors.New("no platform given")
	}
	seen := map[string]bool{}
	var imgs []v1.Image
	for _, p := range spec.Platforms {
		if seen[p.String()] {
			return nil, nil, fmt.Errorf("platform %s given twice", p)
		}
		seen[p.String()] = true
		img, err := buildOne(spec, p)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", p, err)
		}
		imgs = append(imgs, img)
	}
	if len(imgs) == 1 {
		return imgs[0], nil, nil
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for i, img := range imgs {
		p := spec.Platforms[i]
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add: img,
			Descriptor: v1.Descriptor{
				MediaType: types.OCIManifestSchema1,
				Platform:  &v1.Platform{OS: p.OS, Architecture: p.Arch, Variant: p.Variant},
			},
		})
	}
	return nil, idx, nil
}

func buildOne(spec Spec, p Platform) (v1.Image, error) {
	created := spec.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	layerTar, err := tarTree(p.Root, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "hoptrace imagebuild: " + filepath.Base(p.Root)},
	})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Arch, p.Variant
	cf.Created = v1.Time{Time: created}
	cf.Config = v1.Config{
		Entrypoint: spec.Entrypoint,
		Cmd:        spec.Cmd,
		Env:        spec.Env,
		WorkingDir: spec.WorkingDir,
		User:       spec.User,
		Labels:     spec.Labels,
	}
	if len(spec.ExposedPorts) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, port := range spec.ExposedPorts {
			cf.Config.ExposedPorts[port] = struct{}{}
		}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return img, nil
}

// tarTree makes a layer of root's tree: every entry owned by root:root, stamped
// with mtime, in name order, so the digest depends on content and modes only.
// Parent directories are written before their children, as runtimes expect.
func tarTree(root string, mtime time.Time) ([]byte, error) {
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("root filesystem: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("root filesystem %s is not a directory", root)
	}
	var paths []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", root, err)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return nil, err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return nil, err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "root", "root"
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = mtime, time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if fi.Mode().IsRegular() {
			if err := copyFile(tw, p); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func copyFile(w io.Writer, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}
