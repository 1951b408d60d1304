//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "iptproxy: needs Linux (iptables, network namespaces)")
	os.Exit(2)
}
