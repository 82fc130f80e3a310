// SPDX-License-Identifier: GPL-2.0
/*
 * Modules coming and going, as /proc/allocinfo and the kernel log show it:
 * a module's tags appear at load (allocations in its init included), a
 * clean unload removes them silently, and an unload with live allocations
 * reports once per leaking tag and still succeeds. Until 6.12 that report
 * is a WARN (taint W) followed by "cannot unload cleanly"; kernels that
 * keep module tags in an area of their own (those with
 * vm.mem_profiling_compressed) keep the tags' counters and only log it.
 *
 * The helper module is module/alloc_tag_test_mod.c, built against the
 * kernel under test; its path comes from ALLOCPROF_TEST_MODULE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../kselftest_harness.h"
#include "alloc_tag_helpers.h"

#define MOD "alloc_tag_test_mod"
#define INIT_PAGES 2	/* order 1 */
#define ALLOC_PAGES 4	/* order 2 */

/* Skips unless profiling counts and the helper module is there. */
#define NEED_MODULE(path)							\
	do {									\
		SKIP_UNLESS_COUNTING();						\
		path = helper_module(MOD);					\
		if (!path)							\
			SKIP(return, "helper module not built (ALLOCPROF_TEST_MODULE)"); \
	} while (0)

/* Module tags live in an area of their own that outlives the module. */
static int tags_outlive_module(void)
{
	return !access(ALLOC_TAG_COMPRESSED, F_OK);
}

static int count(const char *log, const char *text)
{
	int n = 0;

	for (log = strstr(log, text); log; log = strstr(log + 1, text))
		n++;
	return n;
}

static int load(const char *path, const char *params)
{
	return module_load(path, params);
}

static int unload(void)
{
	return module_unload(MOD);
}

static int param(const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "/sys/module/%s/parameters/%s", MOD, name);
	return read_long(path, -1);
}

struct site {
	long long bytes, calls;
	int line;
	int found;
};

/* The module's line for @func, and how many module lines there are. */
static int module_lines(const char *func, struct site *s)
{
	char line[1024], key[128];
	FILE *f = fopen("/proc/allocinfo", "r");
	int n = 0;

	memset(s, 0, sizeof(*s));
	if (!f)
		return -1;
	snprintf(key, sizeof(key), " [" MOD "] func:%s ", func);
	while (fgets(line, sizeof(line), f)) {
		char *colon;

		if (!strstr(line, " [" MOD "] "))
			continue;
		n++;
		if (!strstr(line, key))
			continue;
		if (sscanf(line, "%lld %lld", &s->bytes, &s->calls) != 2)
			continue;
		colon = strstr(line, ".c:");
		s->line = colon ? atoi(colon + 3) : -1;
		s->found++;
	}
	fclose(f);
	return n;
}

static long taint_flags(void)
{
	return read_long("/proc/sys/kernel/tainted", 0);
}

TEST(load_shows_module_tags)
{
	const char *path;
	long ps = sysconf(_SC_PAGESIZE);
	struct site init, alloc;

	NEED_MODULE(path);
	ASSERT_EQ(0, load(path, ""));
	module_lines("alloc_tag_test_mod_init", &init);
	module_lines("alloc_tag_test_mod_alloc", &alloc);
	EXPECT_EQ(1, init.found);
	EXPECT_EQ(INIT_PAGES * ps, init.bytes);
	EXPECT_EQ(1, init.calls);
	EXPECT_EQ(param("init_line"), init.line);
	EXPECT_EQ(1, alloc.found);
	EXPECT_EQ(ALLOC_PAGES * ps, alloc.bytes);
	EXPECT_EQ(1, alloc.calls);
	EXPECT_EQ(param("alloc_line"), alloc.line);
	ASSERT_EQ(0, unload());
}

TEST(clean_unload_is_silent_and_removes_tags)
{
	const char *path;
	static char log[65536];
	struct site s;
	int fd;

	NEED_MODULE(path);
	ASSERT_EQ(0, load(path, ""));
	fd = kmsg_open(0);
	ASSERT_GE(fd, 0);
	log[0] = '\0';
	ASSERT_EQ(0, unload());
	kmsg_append(fd, log, sizeof(log));
	close(fd);
	EXPECT_EQ(0, module_lines("alloc_tag_test_mod_init", &s));
	EXPECT_EQ(NULL, strstr(log, "allocated at module unload")) TH_LOG("%s", log);
	EXPECT_EQ(NULL, strstr(log, "cannot unload cleanly")) TH_LOG("%s", log);
}

TEST(leaking_unload_reports_each_tag_once)
{
	const char *path;
	long ps = sysconf(_SC_PAGESIZE);
	static char log[65536];
	int fd, init_line, alloc_line;
	long taint_before;
	char want[256];
	struct site s;

	NEED_MODULE(path);
	ASSERT_EQ(0, load(path, "leak=1"));
	/* After the load, which may taint O (and E) the first time. */
	taint_before = taint_flags();
	init_line = param("init_line");
	alloc_line = param("alloc_line");
	fd = kmsg_open(0);
	ASSERT_GE(fd, 0);
	log[0] = '\0';
	/* rmmod still succeeds: the module is gone, its data kept. */
	ASSERT_EQ(0, unload());
	kmsg_append(fd, log, sizeof(log));
	close(fd);

	snprintf(want, sizeof(want), "%s.c:%d module %s func:%s has %ld allocated at module unload",
		 MOD, init_line, MOD, "alloc_tag_test_mod_init", INIT_PAGES * ps);
	EXPECT_EQ(1, count(log, want)) TH_LOG("want '%s' once in:\n%s", want, log);
	snprintf(want, sizeof(want), "%s.c:%d module %s func:%s has %ld allocated at module unload",
		 MOD, alloc_line, MOD, "alloc_tag_test_mod_alloc", ALLOC_PAGES * ps);
	EXPECT_EQ(1, count(log, want)) TH_LOG("want '%s' once in:\n%s", want, log);
	EXPECT_EQ(2, count(log, "allocated at module unload")) TH_LOG("%s", log);
	snprintf(want, sizeof(want),
		 "%s: memory allocation(s) from the module still alive, cannot unload cleanly",
		 MOD);
	if (tags_outlive_module()) {
		/* Logged, not warned: no taint, nothing "unclean". */
		EXPECT_EQ(taint_before, taint_flags());
		EXPECT_EQ(0, count(log, want)) TH_LOG("%s", log);
		EXPECT_EQ(0, count(log, "WARNING:")) TH_LOG("%s", log);
	} else {
		EXPECT_EQ(1, count(log, want)) TH_LOG("want '%s' once in:\n%s", want, log);
		EXPECT_EQ(taint_before | (1 << 9), taint_flags()) TH_LOG("kernel not tainted W");
	}
	EXPECT_EQ(0, module_lines("alloc_tag_test_mod_init", &s));
	EXPECT_EQ(-1, param("leak"));
}

TEST(reload_after_leak_works)
{
	const char *path;
	long ps = sysconf(_SC_PAGESIZE);
	struct site init;

	NEED_MODULE(path);
	ASSERT_EQ(0, load(path, ""));
	module_lines("alloc_tag_test_mod_init", &init);
	EXPECT_EQ(INIT_PAGES * ps, init.bytes);
	EXPECT_EQ(1, init.calls);
	ASSERT_EQ(0, unload());
}

ALLOC_TAG_TEST_MAIN
