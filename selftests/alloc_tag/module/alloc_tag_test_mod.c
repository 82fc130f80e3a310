// SPDX-License-Identifier: GPL-2.0
/*
 * Helper module for module_unload_test: allocates pages in its init and
 * through a function it exports, and frees them at unload unless loaded
 * with leak=1. The lines of its allocation sites are readable in
 * /sys/module/alloc_tag_test_mod/parameters/ so the test can match the
 * kernel's messages exactly. With leak=1 the addresses of its blocks are
 * readable there too, so that alloc_tag_free_mod can free them later.
 * Its exit always frees one slab object through kfree_rcu(): the unload
 * must wait for that free before it looks for leaks.
 */
#include <linux/gfp.h>
#include <linux/module.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>

static bool leak;
module_param(leak, bool, 0444);
MODULE_PARM_DESC(leak, "keep the allocations at unload");

static int init_line;
module_param(init_line, int, 0444);
static int alloc_line;
module_param(alloc_line, int, 0444);

#define INIT_ORDER 1
#define ALLOC_ORDER 2

struct rcu_obj {
	struct rcu_head rcu;
	char data[48];
};

static struct rcu_obj *rcu_obj;
static int rcu_size;
module_param(rcu_size, int, 0444);
MODULE_PARM_DESC(rcu_size, "the slab size of the object its exit frees through kfree_rcu()");
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

/* The object its exit frees through kfree_rcu(), under a tag of its own. */
static noinline struct rcu_obj *alloc_tag_test_mod_rcu_obj(void)
{
	return kmalloc(sizeof(struct rcu_obj), GFP_KERNEL);
}

static int __init alloc_tag_test_mod_init(void)
{
	init_line = __LINE__ + 1;
	init_pages = __get_free_pages(GFP_KERNEL, INIT_ORDER);
	alloc_pages_addr = alloc_tag_test_mod_alloc(ALLOC_ORDER);
	rcu_obj = alloc_tag_test_mod_rcu_obj();
	if (!init_pages || !alloc_pages_addr || !rcu_obj) {
		free_pages(init_pages, INIT_ORDER);
		free_pages(alloc_pages_addr, ALLOC_ORDER);
		kfree(rcu_obj);
		return -ENOMEM;
	}
	rcu_size = ksize(rcu_obj);
	if (leak) {
		leaked[0] = init_pages;
		leaked[1] = alloc_pages_addr;
	}
	return 0;
}

static void __exit alloc_tag_test_mod_exit(void)
{
	kfree_rcu(rcu_obj, rcu);
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
