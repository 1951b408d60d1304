package bpf

// connid.c (the local hand-off's connection identity, docs/proxy.md) is
// compiled on its own: the agent loads it only with --local-handoff.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -Iinclude" -target bpfel -type conn_id -type conn_ends Connid connid.c
