/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Small helpers shared by the alloc_tag selftests: reading the kernel log
 * and one-number files.
 */
#ifndef ALLOC_TAG_HELPERS_H
#define ALLOC_TAG_HELPERS_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* A /dev/kmsg reader, from the oldest record or only for new ones. */
static inline int kmsg_open(int from_start)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);

	if (fd >= 0 && !from_start)
		lseek(fd, 0, SEEK_END);
	return fd;
}

/* Appends the text of every record not read yet to @buf (NUL-terminated). */
static inline void kmsg_append(int fd, char *buf, size_t size)
{
	size_t used = strlen(buf);
	char rec[2048];
	ssize_t r;

	while ((r = read(fd, rec, sizeof(rec) - 1)) > 0 || (r < 0 && errno == EPIPE)) {
		char *text;

		if (r <= 0)
			continue;	/* EPIPE: records were overwritten */
		rec[r] = '\0';
		text = strchr(rec, ';');
		text = text ? text + 1 : rec;
		if (used + strlen(text) + 1 < size) {
			strcpy(buf + used, text);
			used += strlen(text);
		}
	}
}

/* The number in a one-number file, or @fallback. */
static inline long read_long(const char *path, long fallback)
{
	FILE *f = fopen(path, "r");
	long v = fallback;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = fallback;
		fclose(f);
	}
	return v;
}

/*
 * The tests' main(): on a kernel without the feature, one plan-level skip
 * and exit code 4 (KSFT_SKIP), as the kselftest runner expects.
 */
#define ALLOC_TAG_TEST_MAIN							\
int main(int argc, char **argv)							\
{										\
	if (access("/proc/allocinfo", F_OK)) {					\
		ksft_print_header();						\
		ksft_exit_skip("CONFIG_MEM_ALLOC_PROFILING is not set\n");	\
	}									\
	return test_harness_run(argc, argv);					\
}

#endif /* ALLOC_TAG_HELPERS_H */
