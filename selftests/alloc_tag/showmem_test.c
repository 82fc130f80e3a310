// SPDX-License-Identifier: GPL-2.0
/*
 * show_mem's report of the largest allocation sites: after
 * echo m > /proc/sysrq-trigger the kernel log has a header, then up to ten
 * lines "%12s %8llu file:line [module] func:name", sizes in binary units,
 * largest first. The header is "Memory allocations:" until 6.x, and
 * "Memory allocations (profiling is currently turned on|off):" since, which
 * must then name the state vm.mem_profiling reads.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../kselftest_harness.h"
#include "alloc_tag_helpers.h"

#define MAX_RECORDS 4096

/* "4.00 KiB", "512 B", "1.23 MiB" back to bytes (approximately). */
static double size_of(const char *s)
{
	static const char units[] = "BKMGTPE";
	double v = strtod(s, NULL);
	const char *u = strpbrk(s, "BKMGTPE");

	if (u)
		for (int i = 0; i < (int)strlen(units) && units[i] != *u; i++)
			v *= 1024;
	return v;
}

/*
 * Triggers show_mem (sysrq m) and returns the new kernel log records, at
 * most MAX_RECORDS, in @lines; their number, or -errno.
 */
static int sysrq_m(char **lines)
{
	int fd, trig, n = 0;
	char rec[1024], *text;
	ssize_t r;

	fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	lseek(fd, 0, SEEK_END);
	trig = open("/proc/sysrq-trigger", O_WRONLY);
	if (trig < 0 || write(trig, "m", 1) != 1) {
		close(fd);
		return -ENOENT;
	}
	close(trig);
	while (n < MAX_RECORDS &&
	       ((r = read(fd, rec, sizeof(rec) - 1)) > 0 || (r < 0 && errno == EPIPE))) {
		if (r <= 0)
			continue;
		rec[r] = '\0';
		text = strchr(rec, ';');
		text = text ? text + 1 : rec;
		text[strcspn(text, "\n")] = '\0';
		lines[n++] = strdup(text);
	}
	close(fd);
	return n;
}

/* The index of @header among @n @lines, or -1. */
static int find_line(char **lines, int n, const char *header)
{
	int i;

	for (i = 0; i < n; i++)
		if (!strcmp(lines[i], header))
			return i;
	return -1;
}

static void free_lines(char **lines, int n)
{
	while (n > 0)
		free(lines[--n]);
}

#define STATE_HEADER "Memory allocations (profiling is currently turned %s):"

TEST(sysrq_m_lists_top_allocations)
{
	const char *rx = "^ *[0-9][0-9.]* [KMGTPE]?i?B +[0-9]+ [^ ]+:[0-9]+ (\\[[^] ]+\\] )?func:[^ ]+$";
	char state[128], **lines = calloc(MAX_RECORDS, sizeof(char *));
	int n, start, listed = 0, bad = 0, i, with_state;
	double prev = -1;
	regex_t re;

	SKIP_WITHOUT_ALLOCINFO();
	NEED_CONTRACT(with_state, "SHOWMEM_HEADER", "state");
	if (geteuid())
		SKIP(return, "needs root for /proc/sysrq-trigger");
	ASSERT_NE(NULL, lines);
	ASSERT_EQ(0, regcomp(&re, rx, REG_EXTENDED | REG_NOSUB));
	n = sysrq_m(lines);
	if (n == -ENOENT)
		SKIP(return, "no /proc/sysrq-trigger (CONFIG_MAGIC_SYSRQ)");
	ASSERT_LE(0, n);
	/* The SHOWMEM_HEADER contract: the state in the header, or not. */
	if (with_state)
		snprintf(state, sizeof(state), STATE_HEADER,
			 read_long(ALLOC_TAG_SYSCTL, 0) == 1 ? "on" : "off");
	else
		snprintf(state, sizeof(state), "Memory allocations:");
	start = find_line(lines, n, state);
	ASSERT_GE(start, 0) TH_LOG("no \"%s\" in %d new records", state, n);
	for (i = start + 1; i < n && !regexec(&re, lines[i], 0, NULL, 0); i++) {
		double size = size_of(lines[i]);

		/* Largest first (sizes are rounded: allow equal). */
		if (prev >= 0 && size > prev * 1.01) {
			bad++;
			TH_LOG("out of order: %s", lines[i]);
		}
		prev = size;
		listed++;
	}
	EXPECT_GE(listed, 1);
	EXPECT_LE(listed, 10);
	EXPECT_EQ(0, bad);
	/* The first line after the list is not a malformed entry. */
	EXPECT_FALSE(i < n && strstr(lines[i], " func:"))
		TH_LOG("unparsed entry: '%s'", lines[i]);
	regfree(&re);
	free_lines(lines, n);
	free(lines);
}

/*
 * Kernels whose header names the state name it right when profiling is
 * switched off and on again; the list stays (the counters are kept).
 */
TEST(header_names_the_state_it_is_in)
{
	static const char * const states[] = { "on", "off", "on" };
	char want[128], **lines = calloc(MAX_RECORDS, sizeof(char *));
	int fd, n, i, before = read_long(ALLOC_TAG_SYSCTL, -1), with_state;
	const char *why;

	SKIP_WITHOUT_ALLOCINFO();
	NEED_CONTRACT(with_state, "SHOWMEM_HEADER", "state");
	if (!with_state)
		SKIP(return, "not in this kernel: show_mem's header is \"Memory allocations:\"");
	if (geteuid())
		SKIP(return, "needs root for /proc/sysrq-trigger");
	ASSERT_NE(NULL, lines);
	fd = open(ALLOC_TAG_SYSCTL, O_WRONLY);
	if (fd < 0 || write(fd, "1", 1) != 1) {
		int err = errno;

		why = profiling_off_reason();
		if (kernel_config("MEM_ALLOC_PROFILING_DEBUG") == 'y')
			why = "CONFIG_MEM_ALLOC_PROFILING_DEBUG=y";
		SKIP(return, "vm.mem_profiling cannot be switched (%s): %s", strerror(err),
		     why ?: "profiling not supported in this boot");
	}
	for (i = 0; i < ARRAY_SIZE(states); i++) {
		ASSERT_EQ(1, pwrite(fd, strcmp(states[i], "on") ? "0" : "1", 1, 0));
		n = sysrq_m(lines);
		ASSERT_LE(0, n);
		snprintf(want, sizeof(want), STATE_HEADER, states[i]);
		EXPECT_LE(0, find_line(lines, n, want)) TH_LOG("no \"%s\" in %d records", want, n);
		free_lines(lines, n);
	}
	ASSERT_EQ(1, pwrite(fd, before == 1 ? "1" : "0", 1, 0));
	close(fd);
	free(lines);
}

ALLOC_TAG_TEST_MAIN
