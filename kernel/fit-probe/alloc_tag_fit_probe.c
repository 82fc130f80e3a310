// SPDX-License-Identifier: GPL-2.0
/*
 * The numbers of one kernel build that decide whether allocation tags fit
 * into spare page flag bits (sysctl.vm.mem_profiling=...,compressed).
 * runner/fit.py compiles this to assembly against the build (kbuild M=)
 * and reads the "->NAME value" lines, the way asm-offsets works.
 */
#include <linux/kbuild.h>
#include <linux/alloc_tag.h>
#include <linux/mm.h>
#include <linux/pgalloc_tag.h>

void alloc_tag_fit_probe(void);

void alloc_tag_fit_probe(void)
{
	DEFINE(ALLOCPROF_FIT_TAG_SIZE, sizeof(struct alloc_tag));
#ifdef CODETAG_ID_FIRST
	DEFINE(ALLOCPROF_FIT_ID_FIRST, CODETAG_ID_FIRST);
	DEFINE(ALLOCPROF_FIT_FREE_BITS, NR_UNUSED_PAGEFLAG_BITS);
	DEFINE(ALLOCPROF_FIT_INDEX_BITS, 8 * sizeof(pgalloc_tag_idx));
#endif
}
