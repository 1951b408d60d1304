package cgroup2

import (
	"errors"
	"strings"
	"testing"
)

func TestMountpointFrom(t *testing.T) {
	tests := []struct {
		name, mountinfo, want string
		err                   error
	}{
		{
			name: "hybrid host",
			mountinfo: `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw`,
			want: "/sys/fs/cgroup/unified",
		},
		{
			name:      "unified host with optional fields",
			mountinfo: `29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate`,
			want:      "/sys/fs/cgroup",
		},
		{
			name: "a bind-mounted subtree is not the root",
			mountinfo: `29 23 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw
90 29 0:26 /kubepods /var/lib/x/cg rw - cgroup2 cgroup2 rw`,
			want: "/sys/fs/cgroup",
		},
		{
			name:      "escaped path",
			mountinfo: `29 23 0:26 / /mnt/my\040cg rw - cgroup2 none rw`,
			want:      "/mnt/my cg",
		},
		{
			name:      "v1 only",
			mountinfo: `35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory`,
			err:       ErrNotMounted,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mountpointFrom(strings.NewReader(tt.mountinfo))
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
