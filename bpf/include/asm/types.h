/* Architecture-neutral stand-in so the BPF objects build the same on every host. */
#include <asm-generic/types.h>
