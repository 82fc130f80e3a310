import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@pytest.fixture
def data() -> Path:
    return DATA


@pytest.fixture
def tree_6_12(tmp_path):
    """The lines of 6.12.117 that the known issues' source probes read:
    pgalloc_tag_copy()'s bytes-as-pages bug, ___free_pages() without the
    tail-page fix."""
    (tmp_path / "include" / "linux").mkdir(parents=True)
    (tmp_path / "include" / "linux" / "mm.h").write_text(
        "\t/* Decrement the counters of the tag on get_new_folio. */\n"
        "\talloc_tag_sub(ref, folio_nr_pages(new));\n")
    (tmp_path / "mm").mkdir()
    (tmp_path / "mm" / "page_alloc.c").write_text(
        "\t\tpgalloc_tag_sub_pages(tag, (1 << order) - 1);\n"
        "\t\twhile (order-- > 0)\n\t\t\tfree_unref_page(page + (1 << order), order);\n")
    return tmp_path
