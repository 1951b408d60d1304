package bpf

// infer.c (context inference, docs/inference.md) is compiled on its own, so its
// programs load only when the agent asks for them.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -Iinclude" -target bpfel -type conn_key -type trace_ctx -type inflight -type link -type pod -type verdict -type counter Infer infer.c
