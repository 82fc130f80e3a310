// SPDX-License-Identifier: GPL-2.0
/*
 * Helper module for ioctl_test: at load it allocates pages under tags whose
 * bytes and calls the test knows exactly, and it frees them at unload.
 *
 *   function                  pages  calls  accurate
 *   ioctl_mod_one                 1      1  yes
 *   ioctl_mod_four                4      1  yes (one order-2 block)
 *   ioctl_mod_twice               2      2  yes (one site, called twice)
 *   ioctl_mod_marked              2      1  no  (kernels that mark tags)
 *   ioctl_mod_<long name>         1      1  yes (more than 63 characters)
 *
 * All sites are in this file, each on a line of its own.
 */
#include <linux/alloc_tag.h>
#include <linux/gfp.h>
#include <linux/module.h>

#define MARKED_ORDER 1

static unsigned long one, four, twice[2], marked, long_name;

static noinline unsigned long ioctl_mod_one(void)
{
	return __get_free_pages(GFP_KERNEL, 0);
}

static noinline unsigned long ioctl_mod_four(void)
{
	return __get_free_pages(GFP_KERNEL, 2);
}

static noinline unsigned long ioctl_mod_twice(void)
{
	return __get_free_pages(GFP_KERNEL, 0);
}

#ifdef CODETAG_FLAG_INACCURATE
/* A tag of our own, marked as the kernel marks one it lost track of. */
static noinline unsigned long ioctl_mod_marked(void)
{
	DEFINE_ALLOC_TAG(marked_tag);

	alloc_tag_set_inaccurate(&marked_tag);
	return alloc_hooks_tag(&marked_tag,
			       get_free_pages_noprof(GFP_KERNEL, MARKED_ORDER));
}
#else
static noinline unsigned long ioctl_mod_marked(void)
{
	return __get_free_pages(GFP_KERNEL, MARKED_ORDER);
}
#endif

static noinline unsigned long
ioctl_mod_function_whose_name_is_longer_than_the_sixty_three_characters_kept(void)
{
	return __get_free_pages(GFP_KERNEL, 0);
}

static void ioctl_mod_free(void)
{
	free_pages(one, 0);
	free_pages(four, 2);
	free_pages(twice[0], 0);
	free_pages(twice[1], 0);
	free_pages(marked, MARKED_ORDER);
	free_pages(long_name, 0);
}

static int __init alloc_tag_ioctl_mod_init(void)
{
	one = ioctl_mod_one();
	four = ioctl_mod_four();
	twice[0] = ioctl_mod_twice();
	twice[1] = ioctl_mod_twice();
	marked = ioctl_mod_marked();
	long_name = ioctl_mod_function_whose_name_is_longer_than_the_sixty_three_characters_kept();
	if (!one || !four || !twice[0] || !twice[1] || !marked || !long_name) {
		ioctl_mod_free();
		return -ENOMEM;
	}
	return 0;
}

static void __exit alloc_tag_ioctl_mod_exit(void)
{
	ioctl_mod_free();
}

module_init(alloc_tag_ioctl_mod_init);
module_exit(alloc_tag_ioctl_mod_exit);
MODULE_DESCRIPTION("Allocates under tags of known size for the allocinfo ioctl selftest");
MODULE_LICENSE("GPL");
