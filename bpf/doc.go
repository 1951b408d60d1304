// Package bpf holds hoptrace's eBPF programs (redirect.c) and their bpf2go output.
//
// The C source is compiled by `make generate` (go tool bpf2go with clang); the
// generated Go and .o files are committed so that building hoptrace needs no clang,
// and CI checks that regenerating them changes nothing.
package bpf

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -Iinclude" -target bpfel -type event -type orig_dst -type port_key -type orig_rec -type pod_out -type pod_in -type pod_port -type cidr_key -type addr -type pod_id -type pod_record -type pod_local -type reason -type direction -type pod_in_flag -type port_action -type counter -type setting Redirect redirect.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -Iinclude" -target bpfel -type fast_key -type fast_counter Fastpath fastpath.c
