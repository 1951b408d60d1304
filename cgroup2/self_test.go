package cgroup2

import (
	"errors"
	"strings"
	"testing"
)

func TestSelfFrom(t *testing.T) {
	for _, tc := range []struct {
		name, cgroup, mountinfo, want string
		err                           error
	}{
		{
			name:      "host, unified",
			cgroup:    "0::/system.slice/hoptrace.service\n",
			mountinfo: "30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n",
			want:      "/sys/fs/cgroup/system.slice/hoptrace.service",
		},
		{
			name:      "host, hybrid",
			cgroup:    "4:memory:/x\n0::/user.slice/a\n",
			mountinfo: "25 1 0:22 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n40 25 0:37 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
			want:      "/sys/fs/cgroup/unified/user.slice/a",
		},
		{
			// Kubernetes on cgroup v2: the container's own namespace at
			// /sys/fs/cgroup, the host's hierarchy bind-mounted, seen from
			// the namespace as above its root.
			name:      "container with a cgroup namespace",
			cgroup:    "0::/\n",
			mountinfo: "700 690 0:30 / /sys/fs/cgroup ro - cgroup2 cgroup rw\n710 690 0:30 /../../.. /host/cgroup2 rw - cgroup2 cgroup2 rw\n",
			want:      "/sys/fs/cgroup",
		},
		{
			name:      "a subtree mount that is not ours",
			cgroup:    "0::/kubepods/podA/c1\n",
			mountinfo: "30 1 0:26 /kubepods/podB /x - cgroup2 cgroup2 rw\n31 1 0:26 /kubepods/pod /y - cgroup2 cgroup2 rw\n32 1 0:26 / /sys/fs/cgroup - cgroup2 cgroup2 rw\n",
			want:      "/sys/fs/cgroup/kubepods/podA/c1",
		},
		{
			name:      "the closest mount",
			cgroup:    "0::/kubepods/podA/c1\n",
			mountinfo: "32 1 0:26 / /sys/fs/cgroup - cgroup2 cgroup2 rw\n33 1 0:26 /kubepods/podA /mnt/a - cgroup2 cgroup2 rw\n",
			want:      "/mnt/a/c1",
		},
		{
			name:      "no cgroup2",
			cgroup:    "0::/a\n",
			mountinfo: "25 1 0:22 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n",
			err:       ErrNotMounted,
		},
		{
			name:      "cgroup v1 only",
			cgroup:    "4:memory:/x\n",
			mountinfo: "32 1 0:26 / /sys/fs/cgroup - cgroup2 cgroup2 rw\n",
			err:       ErrNotMounted,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := selfFrom(tc.cgroup, strings.NewReader(tc.mountinfo))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("got %q, %v; want %v", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
