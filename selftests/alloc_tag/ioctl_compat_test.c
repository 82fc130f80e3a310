// SPDX-License-Identifier: GPL-2.0
/*
 * The cases of ioctl_test again, from a 32-bit process: the uapi layout as
 * a 32-bit compiler lays it out, and every command through the kernel's
 * compat ioctl path. The Makefile builds them as ioctl_compat_test.m32
 * (-m32, static) where the toolchain can; this program runs that one. Where
 * the toolchain has no -m32, or the kernel cannot run 32-bit programs,
 * every case skips and says which.
 */
#ifndef ALLOC_TAG_M32
#define ALLOC_TAG_OWN_MAIN
#endif

#include "ioctl_test.c"

#ifndef ALLOC_TAG_M32
int main(int argc, char **argv)
{
	static char why[256];
	char path[4096];

	snprintf(path, sizeof(path), "%s.m32", argv[0]);
	if (access(path, X_OK)) {
#ifdef __x86_64__
		cannot_run = "not built as a 32-bit program: no 32-bit x86 compiler (gcc -m32 or i686-linux-gnu-gcc)";
#else
		cannot_run = "not built as a 32-bit program: this suite builds one for x86_64 only";
#endif
	} else {
		execv(path, argv);
		snprintf(why, sizeof(why), "the kernel cannot run 32-bit programs (%s; CONFIG_IA32_EMULATION=%c)",
			 strerror(errno), kernel_config("IA32_EMULATION") ?: '?');
		cannot_run = why;
	}
	if (access(ALLOC_TAG_SYSCTL, F_OK)) {
		ksft_print_header();
		ksft_exit_skip("CONFIG_MEM_ALLOC_PROFILING is not set\n");
	}
	return test_harness_run(argc, argv);
}
#endif
