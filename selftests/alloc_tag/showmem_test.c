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

TEST(sysrq_m_lists_top_allocations)
{
	const char *rx = "^ *[0-9][0-9.]* [KMGTPE]?i?B +[0-9]+ [^ ]+:[0-9]+ (\\[[^] ]+\\] )?func:[^ ]+$";
	char rec[1024], state[128], *text, **lines = calloc(MAX_RECORDS, sizeof(char *));
	int fd, trig, n = 0, start = -1, listed = 0, bad = 0, i;
	double prev = -1;
	regex_t re;
	ssize_t r;

	SKIP_WITHOUT_ALLOCINFO();
	if (geteuid())
		SKIP(return, "needs root for /proc/sysrq-trigger");
	ASSERT_NE(NULL, lines);
	ASSERT_EQ(0, regcomp(&re, rx, REG_EXTENDED | REG_NOSUB));
	fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
	ASSERT_GE(fd, 0);
	lseek(fd, 0, SEEK_END);
	trig = open("/proc/sysrq-trigger", O_WRONLY);
	if (trig < 0)
		SKIP(return, "no /proc/sysrq-trigger (CONFIG_MAGIC_SYSRQ)");
	ASSERT_EQ(1, write(trig, "m", 1));
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
	snprintf(state, sizeof(state), "Memory allocations (profiling is currently turned %s):",
		 read_long(ALLOC_TAG_SYSCTL, 0) == 1 ? "on" : "off");
	for (i = 0; i < n; i++)
		if (!strcmp(lines[i], "Memory allocations:") || !strcmp(lines[i], state)) {
			start = i;
			break;
		}
	ASSERT_GE(start, 0) TH_LOG("no \"Memory allocations:\" nor \"%s\" in %d new records",
				   state, n);
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
}

ALLOC_TAG_TEST_MAIN
