// SPDX-License-Identifier: GPL-2.0
/*
 * Helper module for module_unload_test: allocates pages in its init and
 * through a function it exports, and frees them at unload unless loaded
 * with leak=1. The lines of its allocation sites are readable in
 * /sys/module/alloc_tag_test_mod/parameters/ so the test can match the
 * kernel's messages exactly. With leak=1 the addresses of its blocks are
 * readable there too, so that alloc_tag_free_mod can free them later.
 */
#include <linux/gfp.h>
#include <linux/module.h>

static bool leak;
module_param(leak, bool, 0444);
MODULE_PARM_DESC(leak, "keep the allocations at unload");

static int init_line;
module_param(init_line, int, 0444);
static int alloc_line;
module_param(alloc_line, int, 0444);

#define INIT_ORDER 1
#define ALLOC_ORDER 2

static unsigned long init_pages, alloc_pages_addr;
static unsigned long leaked[2];
module_param_array(leaked, ulong, NULL, 0400);
MODULE_PARM_DESC(leaked, "addresses of the blocks left at unload (orders 1 and 2)");

noinline unsigned long alloc_tag_test_mod_alloc(unsigned int order)
{
	alloc_line = __LINE__ + 1;
	return __get_free_pages(GFP_KERNEL, order);
}
EXPORT_SYMBOL_GPL(alloc_tag_test_mod_alloc);

static int __init alloc_tag_test_mod_init(void)
{
	init_line = __LINE__ + 1;
	init_pages = __get_free_pages(GFP_KERNEL, INIT_ORDER);
	alloc_pages_addr = alloc_tag_test_mod_alloc(ALLOC_ORDER);
	if (!init_pages || !alloc_pages_addr) {
		free_pages(init_pages, INIT_ORDER);
		free_pages(alloc_pages_addr, ALLOC_ORDER);
		return -ENOMEM;
	}
	if (leak) {
		leaked[0] = init_pages;
		leaked[1] = alloc_pages_addr;
	}
	return 0;
}

static void __exit alloc_tag_test_mod_exit(void)
{
	/*
	 * Leaked blocks may be freed later (by alloc_tag_free_mod) only where
	 * the kernel keeps module tags past the unload.
	 */
	if (leak)
		return;
	free_pages(init_pages, INIT_ORDER);
	free_pages(alloc_pages_addr, ALLOC_ORDER);
}

module_init(alloc_tag_test_mod_init);
module_exit(alloc_tag_test_mod_exit);
MODULE_DESCRIPTION("Allocates under its own tags for the alloc_tag selftests");
MODULE_LICENSE("GPL");
