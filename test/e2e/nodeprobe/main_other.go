//go:build !linux

// Command nodeprobe inspects a Linux node's BPF state; see main_linux.go.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "nodeprobe: Linux only")
	os.Exit(1)
}
