package redirect

import (
	"net/netip"

	"github.com/hoptrace/hoptrace/bpf"
)

func bpfPortKey(cookie uint64, port uint16) bpf.RedirectPortKey {
	return bpf.RedirectPortKey{NetnsCookie: cookie, Port: port, Family: afInet}
}

func bpfOrigDst(ap netip.AddrPort) bpf.RedirectOrigDst {
	return bpf.RedirectOrigDst{Ip: toBPFAddr(ap.Addr()), Port: ap.Port(), Family: afInet}
}
