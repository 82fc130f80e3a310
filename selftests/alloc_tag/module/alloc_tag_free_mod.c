// SPDX-License-Identifier: GPL-2.0
/*
 * Helper module for module_unload_test: frees, at load, page blocks that
 * another module allocated and leaked at its unload (their addresses and
 * orders come as parameters). It allocates nothing itself, so it has no
 * allocation tags: its load and unload must not change the allocinfo
 * content id.
 */
#include <linux/gfp.h>
#include <linux/module.h>

static unsigned long addr[2];
static unsigned int naddr;
module_param_array(addr, ulong, &naddr, 0400);
MODULE_PARM_DESC(addr, "page blocks to free");

static unsigned int order[2];
static unsigned int norder;
module_param_array(order, uint, &norder, 0400);
MODULE_PARM_DESC(order, "their orders");

static int __init alloc_tag_free_mod_init(void)
{
	unsigned int i;

	if (naddr != norder)
		return -EINVAL;
	for (i = 0; i < naddr; i++)
		if (addr[i])
			free_pages(addr[i], order[i]);
	return 0;
}

static void __exit alloc_tag_free_mod_exit(void)
{
}

module_init(alloc_tag_free_mod_init);
module_exit(alloc_tag_free_mod_exit);
MODULE_DESCRIPTION("Frees pages another alloc_tag test module leaked");
MODULE_LICENSE("GPL");
