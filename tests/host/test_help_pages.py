"""The per-node help pages and the English node texts, as the real server serves them to the frontend.

Frontend 1.27 asks for /extensions/<pack folder>/docs/<node id>.md (the web directory, js/docs/), resolves the
page's relative pictures against that folder, and merges <pack>/locales/<lang>/nodeDefs.json (via /i18n) over
the node definitions.
"""
import importlib.util
import re
import urllib.error

import pytest

from _server import PACK_DIR, comfy_server_fixture, server_fixture  # noqa: F401
from hostlib import ROOT

_spec = importlib.util.spec_from_file_location("negguide_make_locales", ROOT / "scripts" / "make_locales.py")
make_locales = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_locales)
PICTURE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def our_nodes(server) -> dict:
    return {k: v for k, v in server.object_info.items() if k.startswith("NegGuide")}


def test_every_node_has_a_help_page_naming_every_input_and_output(server):
    nodes = our_nodes(server)
    assert len(nodes) >= 14, sorted(nodes)
    for node_id, info in nodes.items():
        page = server.request(f"/extensions/{PACK_DIR}/docs/{node_id}.md").decode()  # raises on a 404
        assert page.startswith(f"# {info['display_name']}\n"), (node_id, page[:80])
        names = [*info["input"].get("required", {}), *info["input"].get("optional", {}), *info["output_name"]]
        missing = [n for n in names if f"`{n}`" not in page]
        assert not missing, f"js/docs/{node_id}.md does not describe {missing}"
        assert "## Try it" in page and "Templates" in page, f"js/docs/{node_id}.md names no workflow to try"
        for src in PICTURE.findall(page):
            assert server.request(f"/extensions/{PACK_DIR}/docs/{src}")[:4] == b"\x89PNG", (node_id, src)


def test_help_pages_exist_only_for_real_nodes(server):
    """A renamed node leaves no orphaned page behind (the frontend would never ask for it)."""
    pages = {p.stem for p in (ROOT / "js" / "docs").glob("*.md")}
    assert pages == set(our_nodes(server)), pages ^ set(our_nodes(server))


def test_english_node_texts_match_the_nodes(server):
    """/i18n serves locales/en/nodeDefs.json; the frontend prefers it to the node's own texts, so it must say
    exactly what the nodes say (regenerate: python scripts/make_locales.py --url <a running ComfyUI>)."""
    served = server.get("/i18n").get("en", {}).get("nodeDefs", {})
    expected = make_locales.node_defs(server.object_info)
    stale = sorted(k for k in expected if served.get(k) != expected[k])
    assert not stale, f"locales/en/nodeDefs.json is stale for {stale}; run scripts/make_locales.py"
    unknown = {k for k in served if k.startswith("NegGuide")} - set(expected)
    assert not unknown, f"locales/en/nodeDefs.json has nodes that do not exist: {unknown}"


def test_a_missing_page_is_a_404(server):
    """The 200s above are real: the same URL for a node without a page fails."""
    with pytest.raises(urllib.error.HTTPError, match="404"):
        server.request(f"/extensions/{PACK_DIR}/docs/NegGuideNoSuchNode.md")
