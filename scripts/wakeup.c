// wakeup: what waking a sleeping process costs on this machine.
//
// Two processes pass one byte back and forth over pipes, each asleep in
// read() between messages, with a pause between round trips so that the CPUs
// go idle as they do at 1,000 req/s: each round trip is two wake-ups and
// nothing else. Prints the round trip's p50/p90/p99 in microseconds.
// docs/benchmarks.md ("Latency at 1,000 req/s and this machine's wake-ups")
// uses it:
//
//   gcc -O2 -o /tmp/wakeup scripts/wakeup.c
//   CHILDCPU=0 taskset -c 0 /tmp/wakeup 3000 1000   # both on CPU 0
//   CHILDCPU=1 taskset -c 0 /tmp/wakeup 3000 1000   # one on each CPU
//
// Arguments: round trips (default 3000), pause between them in µs (1000).
// CHILDCPU pins the echoing process to that CPU; taskset pins the other.
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
	int n = argc > 1 ? atoi(argv[1]) : 3000;
	int pause_us = argc > 2 ? atoi(argv[2]) : 1000;
	int ab[2], ba[2];
	char c = 'x';
	if (n < 100 || pipe(ab) != 0 || pipe(ba) != 0) {
		fprintf(stderr, "usage: wakeup [round trips >= 100] [pause µs]\n");
		return 2;
	}
	if (fork() == 0) { // the echo: asleep in read until the byte comes
		const char *cpu = getenv("CHILDCPU");
		if (cpu) {
			cpu_set_t s;
			CPU_ZERO(&s);
			CPU_SET(atoi(cpu), &s);
			sched_setaffinity(0, sizeof s, &s);
		}
		while (read(ab[0], &c, 1) == 1 && write(ba[1], &c, 1) == 1) {
		}
		_exit(0);
	}
	double *rt = malloc(n * sizeof *rt);
	for (int i = 0; i < n; i++) {
		double t = now_us();
		if (write(ab[1], &c, 1) != 1 || read(ba[0], &c, 1) != 1) {
			perror("wakeup");
			return 1;
		}
		rt[i] = now_us() - t;
		if (pause_us > 0) {
			usleep(pause_us);
		}
	}
	qsort(rt, n, sizeof *rt, cmp);
	printf("pause %d µs: round trip p50 %.1f p90 %.1f p99 %.1f µs (n=%d)\n",
	       pause_us, rt[n / 2], rt[n * 9 / 10], rt[n * 99 / 100], n);
	close(ab[1]); // the echo reads EOF and exits
	return 0;
}
