"""The tree's import graph (#23), built by grimp from every import statement, at module level or not and under
TYPE_CHECKING too: no module imports itself back through others, no service imports another (they talk through
Redis and S3), shared/ imports nothing above it, and nothing imports the tests but the tests (the helpers scripts
and tests share live in scripts/support/)."""

from __future__ import annotations

from collections.abc import Iterator

import grimp
import pytest

PACKAGES = ("services", "shared", "scripts", "tests")
SERVICES = ("services.gateway", "services.worker", "services.janitor")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=False)


def circles(graph: grimp.ImportGraph) -> Iterator[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, imported = work[-1]
            step = next(imported, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(graph.find_modules_directly_imported_by(step)))))
                elif step in on_stack:
                    low[module] = min(low[module], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[module])
            if low[module] == index[module]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1:
                    yield sorted(component)


def test_no_module_imports_itself_back(graph):
    assert list(circles(graph)) == []


def test_the_circle_finder_finds_one():
    # A graph with a circle of its own, so the test above cannot pass by finding nothing anywhere.
    made = grimp.ImportGraph()
    for module in ("a", "a.b", "a.c", "a.d"):
        made.add_module(module)
    made.add_import(importer="a.b", imported="a.c")
    made.add_import(importer="a.c", imported="a.b")
    made.add_import(importer="a.c", imported="a.d")
    assert list(circles(made)) == [["a.b", "a.c"]]


@pytest.mark.parametrize("importer", SERVICES)
def test_no_service_imports_another(graph, importer):
    for imported in SERVICES:
        if imported != importer:
            assert not graph.chain_exists(importer=importer, imported=imported, as_packages=True), (importer, imported)


def test_shared_imports_nothing_above_it(graph):
    for above in ("services", "scripts"):
        assert not graph.chain_exists(importer="shared", imported=above, as_packages=True), above


@pytest.mark.parametrize("importer", ("services", "shared", "scripts"))
def test_only_the_tests_import_the_tests(graph, importer):
    # Until #23 eight scripts and `make sheet` imported tests/support, so a script needed the test tree to run.
    assert not graph.chain_exists(importer=importer, imported="tests", as_packages=True), importer


def test_no_service_imports_the_scripts(graph):
    assert not graph.chain_exists(importer="services", imported="scripts", as_packages=True)
