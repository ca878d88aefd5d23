/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The harness our guest test tools share: cases that record a failure
 * message, TAP output (kselftest style) and one JSON summary line the
 * orchestrator's metrics read, data patterns and their checksums.
 *
 * Header-only: each tool is one static (or dynamically linked) program.
 */
#ifndef P2PLAB_SELFTEST_H
#define P2PLAB_SELFTEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static char fail_msg[1024];

/* On failure: record the message and jump to the case's cleanup @label. */
#define FAIL_IF(label, cond, ...) do {					\
	if (cond) {							\
		snprintf(fail_msg, sizeof(fail_msg), __VA_ARGS__);	\
		goto label;						\
	}								\
} while (0)

#define CHECK(cond, ...) do {						\
	if (!(cond)) {							\
		snprintf(fail_msg, sizeof(fail_msg), __VA_ARGS__);	\
		return -1;						\
	}								\
} while (0)

static inline uint64_t fnv1a(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t h = 0xcbf29ce484222325ull;

	while (n--)
		h = (h ^ *b++) * 0x100000001b3ull;
	return h;
}

/* A pattern unique to @seed (xorshift32 words), so a stale copy shows. */
static inline void fill(void *p, size_t n, uint32_t seed)
{
	uint32_t *w = p, x = seed * 2654435761u + 1;
	size_t i;

	for (i = 0; i < n / 4; i++) {
		x ^= x << 13; x ^= x >> 17; x ^= x << 5;
		w[i] = x;
	}
	for (i = n & ~3ul; i < n; i++)
		((unsigned char *)p)[i] = (unsigned char)(seed + i);
}

struct selftest_case {
	const char *name;
	int (*fn)(void);
	int by_name_only;	/* destructive or slow: runs only with --only */
};

struct selftest {
	const char *tool;
	const struct selftest_case *cases;
	int ncases;
	const char *only[32];
	int nonly;
};

static inline int selftest_selected(const struct selftest *t,
				    const struct selftest_case *c)
{
	int i;

	if (!t->nonly)
		return !c->by_name_only;
	for (i = 0; i < t->nonly; i++)
		if (!strcmp(t->only[i], c->name))
			return 1;
	return 0;
}

/*
 * Run the selected cases; print TAP and the JSON line, which starts with
 * the tool's name and ends with @extra_json (may be "").  Returns the exit
 * status: 0 when every case passed.
 */
static inline int selftest_run(const struct selftest *t, const char *extra_json)
{
	static char json_cases[16384];
	int i, n = 0, pass = 0, fail = 0;
	size_t jl = 0;

	for (i = 0; i < t->ncases; i++)
		n += selftest_selected(t, &t->cases[i]);
	printf("TAP version 13\n1..%d\n", n);
	for (i = 0, n = 0; i < t->ncases; i++) {
		const struct selftest_case *c = &t->cases[i];
		int r;

		if (!selftest_selected(t, c))
			continue;
		fail_msg[0] = 0;
		printf("# RUN %s\n", c->name);
		r = c->fn();
		n++;
		if (r) {
			fail++;
			printf("not ok %d %s # %s\n", n, c->name, fail_msg);
		} else {
			pass++;
			printf("ok %d %s\n", n, c->name);
		}
		jl += snprintf(json_cases + jl, sizeof(json_cases) - jl,
			       "%s{\"name\":\"%s\",\"result\":\"%s\"}", jl ? "," : "",
			       c->name, r ? "fail" : "pass");
		if (jl >= sizeof(json_cases))
			jl = sizeof(json_cases) - 1;
	}
	printf("# Totals: pass:%d fail:%d xfail:0 xpass:0 skip:0 error:0\n", pass, fail);
	printf("{\"tool\":\"%s\",%s%s\"pass\":%d,\"fail\":%d,\"cases\":[%s]}\n",
	       t->tool, extra_json, *extra_json ? "," : "", pass, fail, json_cases);
	return fail ? 1 : 0;
}

#endif /* P2PLAB_SELFTEST_H */
