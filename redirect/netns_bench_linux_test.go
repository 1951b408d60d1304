package redirect

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/internal/testenv"
	"github.com/hoptrace/hoptrace/netns"
	"github.com/hoptrace/hoptrace/nodebox"
)

// BenchmarkInNetns is the fixed cost of running code inside a pod's netns.
func BenchmarkInNetns(b *testing.B) {
	testenv.RequirePrivileged(b)
	node, err := nodebox.New()
	if err != nil {
		b.Fatal(err)
	}
	defer node.Close()
	p, _ := node.AddPod("a")
	ns, err := os.Open(p.NetnsPath)
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	b.Run("empty", func(b *testing.B) {
		for b.Loop() {
			if err := netns.Do(int(ns.Fd()), func() error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("socket", func(b *testing.B) {
		for b.Loop() {
			var fd int
			if err := netns.Do(int(ns.Fd()), func() (err error) {
				fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				return err
			}); err != nil {
				b.Fatal(err)
			}
			unix.Close(fd)
		}
	})
}
