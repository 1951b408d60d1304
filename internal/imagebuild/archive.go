package imagebuild

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
)

// Annotations containerd and Docker read from an OCI layout's index.json to name
// the images they import (the same pair `docker save` writes).
const (
	annotationImageName = "io.containerd.image.name"
	annotationRefName   = "org.opencontainers.image.ref.name"
)

// WriteArchive writes the image (or index) as an OCI image layout in a tar
// stream: oci-layout, index.json and blobs/sha256/*. For a single-platform image
// it also writes Docker's manifest.json pointing at the same blobs, so older
// `docker load` versions take the archive too.
func WriteArchive(w io.Writer, name string, img v1.Image, idx v1.ImageIndex) error {
	if (img == nil) == (idx == nil) {
		return errors.New("write archive: want exactly one of image and index")
	}
	full, err := FullName(name)
	if err != nil {
		return err
	}
	aw := &archiveWriter{tw: tar.NewWriter(w), written: map[v1.Hash]bool{}}
	var top partial.Describable
	if img != nil {
		if err := aw.image(img); err != nil {
			return err
		}
		top = img
	} else {
		if err := aw.index(idx); err != nil {
			return err
		}
		top = idx
	}
	desc, err := partial.Descriptor(top)
	if err != nil {
		return fmt.Errorf("describe image: %w", err)
	}
	desc.Annotations = map[string]string{
		annotationImageName: full,
		annotationRefName:   full[strings.LastIndexByte(full, ':')+1:],
	}
	desc.Platform = nil
	index := v1.IndexManifest{SchemaVersion: 2, MediaType: "application/vnd.oci.image.index.v1+json", Manifests: []v1.Descriptor{*desc}}
	if err := aw.json("index.json", index); err != nil {
		return err
	}
	if err := aw.file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if img != nil {
		if err := aw.dockerManifest(img, full); err != nil {
			return err
		}
	}
	if err := aw.tw.Close(); err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	return nil
}

// WriteArchiveFile writes the archive to path atomically (a temporary file
// renamed into place), so an interrupted build never leaves half an archive
// that an import would then reject.
func WriteArchiveFile(path, name string, img v1.Image, idx v1.ImageIndex) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := WriteArchive(f, name, img, idx); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

type archiveWriter struct {
	tw      *tar.Writer
	written map[v1.Hash]bool
}

func (a *archiveWriter) file(name string, data []byte) error {
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
	if err := a.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := a.tw.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

func (a *archiveWriter) json(name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	return a.file(name, data)
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

func (a *archiveWriter) blob(h v1.Hash, data []byte) error {
	if a.written[h] {
		return nil
	}
	a.written[h] = true
	return a.file(blobPath(h), data)
}

func (a *archiveWriter) streamBlob(h v1.Hash, size int64, open func() (io.ReadCloser, error)) error {
	if a.written[h] {
		return nil
	}
	a.written[h] = true
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	hdr := &tar.Header{Name: blobPath(h), Mode: 0o644, Size: size, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
	if err := a.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write blob %s: %w", h, err)
	}
	if n, err := io.Copy(a.tw, rc); err != nil {
		return fmt.Errorf("write blob %s: %w", h, err)
	} else if n != size {
		return fmt.Errorf("write blob %s: %d bytes, manifest says %d", h, n, size)
	}
	return nil
}

func (a *archiveWriter) image(img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("layers: %w", err)
	}
	for _, l := range layers {
		h, err := l.Digest()
		if err != nil {
			return fmt.Errorf("layer digest: %w", err)
		}
		size, err := l.Size()
		if err != nil {
			return fmt.Errorf("layer size: %w", err)
		}
		if err := a.streamBlob(h, size, l.Compressed); err != nil {
			return err
		}
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("config digest: %w", err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := a.blob(cfgName, cfg); err != nil {
		return err
	}
	return a.manifest(img)
}

func (a *archiveWriter) manifest(m interface {
	Digest() (v1.Hash, error)
	RawManifest() ([]byte, error)
}) error {
	h, err := m.Digest()
	if err != nil {
		return fmt.Errorf("manifest digest: %w", err)
	}
	raw, err := m.RawManifest()
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return a.blob(h, raw)
}

func (a *archiveWriter) index(idx v1.ImageIndex) error {
	im, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return fmt.Errorf("index entry %s: %w", d.Digest, err)
		}
		if err := a.image(img); err != nil {
			return err
		}
	}
	return a.manifest(idx)
}

// dockerManifest writes manifest.json, the `docker save` format, naming the
// image by its short form (docker load shows "hoptrace/hoptrace:dev").
func (a *archiveWriter) dockerManifest(img v1.Image, full string) error {
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	var paths []string
	for _, l := range layers {
		h, err := l.Digest()
		if err != nil {
			return err
		}
		paths = append(paths, blobPath(h))
	}
	short := strings.TrimPrefix(strings.TrimPrefix(full, "docker.io/"), "library/")
	return a.json("manifest.json", []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{Config: blobPath(cfgName), RepoTags: []string{short}, Layers: paths}})
}
