"""Property tests: garbage and truncation never raise, never turn a
missing test into a pass, and never lose a declared test."""

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.ktap import parse_lines, parse_text
from runner.results import Status, leaves

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)
suites = st.lists(
    st.tuples(names, st.lists(st.tuples(names, st.booleans()), min_size=1, max_size=6)),
    min_size=1, max_size=5,
)


def kunit_doc(spec) -> list[str]:
    lines = ["KTAP version 1", f"1..{len(spec)}"]
    for i, (suite, cases) in enumerate(spec, 1):
        lines += ["    KTAP version 1", f"    # Subtest: {suite}", f"    1..{len(cases)}"]
        for j, (case, ok) in enumerate(cases, 1):
            if not ok:
                lines.append(f"    # {case}: EXPECTATION FAILED at x.c:{j}")
            lines.append(f"    {'ok' if ok else 'not ok'} {j} {case}")
        lines.append(f"{'ok' if all(ok for _, ok in cases) else 'not ok'} {i} {suite}")
    return lines


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_garbage_never_raises(text):
    parse_text(text)


@settings(max_examples=200, deadline=None)
@given(st.binary())
def test_binary_garbage_never_raises(blob):
    parse_lines(line.decode("utf-8", "replace") for line in blob.splitlines(True))


@settings(max_examples=300, deadline=None)
@given(suites, st.data())
def test_truncation_never_loses_or_passes_a_missing_test(spec, data):
    lines = kunit_doc(spec)
    cut = data.draw(st.integers(min_value=2, max_value=len(lines)))
    out = parse_lines(lines[:cut])
    ls = leaves(out.tests)
    # Every declared suite is present, each with all its declared cases.
    assert len(out.tests) == len(spec)
    for suite_result, (_, cases) in zip(out.tests, spec, strict=True):
        if suite_result.children or suite_result.status == Status.PASS:
            assert len(suite_result.children) == len(cases)
    # A test is a pass only if its own result line survived the cut.
    kept = "\n".join(lines[:cut])
    for leaf in ls:
        if leaf.result.status == Status.PASS:
            assert f"ok {leaf.result.number} {leaf.result.name}" in kept


@settings(max_examples=200, deadline=None)
@given(suites, st.lists(st.text(alphabet="abcdefgh .:=[]()", max_size=40), max_size=30),
       st.data())
def test_interleaved_noise_changes_nothing(spec, noise, data):
    lines = kunit_doc(spec)
    noisy = list(lines)
    for n in noise:
        at = data.draw(st.integers(min_value=0, max_value=len(noisy)))
        noisy.insert(at, "[    1.000000] " + n.lstrip())
    clean = [(leaf.path, leaf.result.status) for leaf in leaves(parse_lines(lines).tests)]
    dirty = [(leaf.path, leaf.result.status) for leaf in leaves(parse_lines(noisy).tests)]
    assert clean == dirty
