# SPDX-License-Identifier: GPL-2.0
#
# What this tree's alloc_tag API looks like, for the iterator suite that
# alloc_tag.c includes (see alloc_tag_kunit.h). Included by the Makefile
# of the directory that holds alloc_tag.c.
ifdef CONFIG_ALLOC_TAG_KUNIT_TEST
# codetag_lock_module_list(type, bool) became a lock/unlock pair in 7.x.
CFLAGS_alloc_tag.o += $(if $(shell grep -s codetag_unlock_module_list \
	$(srctree)/include/linux/codetag.h),-DALLOC_TAG_KUNIT_CT_UNLOCK)
endif
