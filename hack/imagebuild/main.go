// Command imagebuild writes a one-layer container image archive from directory
// trees, without a container engine or registry (see internal/imagebuild).
//
//	go run ./hack/imagebuild -name hoptrace/hoptrace:dev -o bin/images/hoptrace.tar \
//	    -entrypoint /usr/local/bin/hoptrace -env PATH=/usr/local/bin:/usr/bin:/bin \
//	    linux/amd64=bin/rootfs/hoptrace/amd64 linux/arm64=bin/rootfs/hoptrace/arm64
//
// Each positional argument is os/arch[/variant]=DIR: DIR's tree becomes that
// platform's image. Several platforms make a multi-platform image. The archive
// loads with `ctr -n k8s.io images import`, `kind load image-archive` and
// `docker load`.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hoptrace/hoptrace/internal/imagebuild"
)

// list is a repeatable string flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	var (
		spec        imagebuild.Spec
		entrypoint  list
		cmd         list
		env         list
		labels      list
		ports       list
		out         = fs.String("o", "", "archive to write (required)")
		epoch       = fs.Int64("created", sourceDateEpoch(), "creation time, Unix seconds (default $SOURCE_DATE_EPOCH or 0)")
		printDigest = fs.Bool("print-digest", false, "print the image (or index) digest on stdout")
	)
	fs.StringVar(&spec.Name, "name", "", "image reference, e.g. hoptrace/hoptrace:dev (required)")
	fs.Var(&entrypoint, "entrypoint", "entrypoint argument (repeat for each)")
	fs.Var(&cmd, "cmd", "default argument (repeat for each)")
	fs.Var(&env, "env", "KEY=VALUE (repeatable)")
	fs.Var(&labels, "label", "KEY=VALUE (repeatable)")
	fs.Var(&ports, "port", "exposed port, e.g. 8080/tcp (repeatable)")
	fs.StringVar(&spec.WorkingDir, "workdir", "", "working directory")
	fs.StringVar(&spec.User, "user", "", "user[:group] to run as")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: imagebuild -name REF -o FILE [flags] os/arch[/variant]=ROOTFS_DIR ...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if spec.Name == "" || *out == "" || fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("-name, -o and at least one platform=dir are required")
	}
	for _, a := range fs.Args() {
		plat, dir, ok := strings.Cut(a, "=")
		if !ok || dir == "" {
			return fmt.Errorf("argument %q: want os/arch[/variant]=DIR", a)
		}
		p, err := imagebuild.ParsePlatform(plat)
		if err != nil {
			return err
		}
		p.Root = dir
		spec.Platforms = append(spec.Platforms, p)
	}
	spec.Entrypoint, spec.Cmd, spec.Env, spec.ExposedPorts = entrypoint, cmd, env, ports
	if len(labels) > 0 {
		spec.Labels = map[string]string{}
		for _, l := range labels {
			k, v, ok := strings.Cut(l, "=")
			if !ok || k == "" {
				return fmt.Errorf("-label %q: want KEY=VALUE", l)
			}
			spec.Labels[k] = v
		}
	}
	spec.Created = time.Unix(*epoch, 0).UTC()
	img, idx, err := imagebuild.Build(spec)
	if err != nil {
		return fmt.Errorf("build %s: %w", spec.Name, err)
	}
	if err := imagebuild.WriteArchiveFile(*out, spec.Name, img, idx); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	if *printDigest {
		var d fmt.Stringer
		if img != nil {
			h, err := img.Digest()
			if err != nil {
				return err
			}
			d = h
		} else {
			h, err := idx.Digest()
			if err != nil {
				return err
			}
			d = h
		}
		fmt.Println(d)
	}
	return nil
}

func sourceDateEpoch() int64 {
	var n int64
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		if _, err := fmt.Sscan(v, &n); err == nil {
			return n
		}
	}
	return 0
}
