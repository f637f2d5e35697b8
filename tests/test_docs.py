"""Every fenced bash/python block of README.md and docs/*.md runs (see tests/docs_runner.py for the
substitution table, the size caps of UNMASK_DOCS_SIZE and the opt-out marker).

One test per block, in document order; blocks of one document share a working folder, so a file
written by one command is there for the next. A document added to docs/ is picked up as it is."""

from __future__ import annotations

import unittest

import pytest
from docs_runner import (
    Stats,
    document_namespace,
    documents,
    make_sybil,
    match_output,
    rewrite_bash,
    skip_markers,
    stop_server,
    write_standins,
)

SYBIL = make_sybil()


def _collect():
    """(document, code example, directive examples just before it) in document order."""
    items = []
    for path in documents():
        doc = SYBIL.parse(path)
        pending = []
        for ex in doc.examples():
            if isinstance(ex.parsed, tuple):  # a skip directive: evaluated with the block it precedes
                pending.append(ex)
                continue
            items.append(pytest.param(doc, ex, tuple(pending), id=f"{path.name}:{ex.line}"))
            pending = []
    return items


ITEMS = _collect()


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    cache = tmp_path_factory.mktemp("hf_cache")
    return cache, write_standins(cache)


@pytest.fixture(scope="module")
def namespaces(standins, tmp_path_factory):
    made = {}
    yield made, tmp_path_factory
    for ns in made.values():
        stop_server(ns)


@pytest.mark.parametrize("doc,example,directives", ITEMS)
def test_doc_block(doc, example, directives, standins, namespaces):
    made, factory = namespaces
    if doc.path not in made:
        for ns in made.values():  # the previous document is done: its server may go
            stop_server(ns)
        cache, folders = standins
        made[doc.path] = document_namespace(folders, cache, factory.mktemp("doc"))
        doc.namespace.update(made[doc.path])
    for d in directives:
        d.evaluate()
    try:
        example.evaluate()
    except unittest.SkipTest as e:  # a skip marker (its reason is printed in the summary)
        Stats.skipped.append(f"{example.path.rsplit('/', 1)[-1]}:{example.line}: {e}")
        raise


def test_every_opt_out_states_why():
    for path in documents():
        for line, action, reason in skip_markers(path):
            assert action == "next", f"{path.name}:{line}: use `skip: next \"reason\"` (one block at a time)"
            assert len(reason) >= 8, f"{path.name}:{line}: an opt-out must say why (GPU, network, hours)"


def test_output_matching_rules():
    assert match_output("a ... b\n...\nend", "a xyz b\nx\ny\nend")
    assert not match_output("a ... b\nend", "a xyz c\nend")
    assert not match_output("one", "one\ntwo")


def test_small_size_caps_flags_and_keeps_aliases(standins, tmp_path):
    cache, folders = standins
    ns = document_namespace(folders, cache, tmp_path)
    script, _ = rewrite_bash("unmask sample --model_name_or_path llada --prompt hi --max_new_tokens 300", ns)
    assert "--max_new_tokens 48" in script and str(folders["llada"]) not in script
