"""Dev script: brings the templates in example_workflows/ up to date with the nodes after a schema change.

Each template is opened in the real frontend (as a user opens it), so nodes that gained inputs get their widgets
with default values and their new heights; it is then saved back with those widget values, and any node that now
overlaps another is moved down (or its whole column is) until nothing overlaps. Run make_thumbnails.py after it.

    python scripts/refresh_templates.py [--url http://127.0.0.1:8188]
"""
import argparse
import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("comfy_frontend", ROOT / "scripts" / "comfy_frontend.py")
cf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cf)
GAP = 30  # canvas units between a moved node and the one above it

# Node rectangles in canvas units, title bar included: [id, x0, y0, x1, y1].
RECTS_JS = """() => app.graph.nodes.map((n) => [n.id, n.pos[0], n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT,
                                                n.pos[0] + n.size[0], n.pos[1] + n.size[1]])"""


def unoverlap(rects: list) -> dict:
    """{id: dy}: top to bottom, a node that overlaps one above it moves down below it (the ones it then hits
    follow in turn); x never changes, so the graph keeps its left-to-right reading order."""
    placed, moves = [], {}
    for nid, x0, y0, x1, y1 in sorted(rects, key=lambda r: (r[2], r[1])):
        dy = 0.0
        for _, a0, b0, a1, b1 in placed:
            if x0 < a1 and a0 < x1 and y0 + dy < b1 and b0 < y1 + dy:
                dy = b1 + GAP - y0
        placed.append((nid, x0, y0 + dy, x1, y1 + dy))
        if dy:
            moves[nid] = dy
    return moves


def refresh(page, path: pathlib.Path):
    workflow = json.loads(path.read_text())
    page.evaluate("async ([wf, name]) => { await app.loadGraphData(wf, true, true, name); }", [workflow, path.stem])
    page.wait_for_timeout(300)
    for _ in range(5):  # a moved node can land on the next one: repeat until nothing moves
        moves = unoverlap(page.evaluate(RECTS_JS))
        if not moves:
            break
        page.evaluate("(moves) => { for (const [id, dy] of Object.entries(moves)) "
                      "app.graph.getNodeById(Number(id)).pos[1] += dy; }", moves)
    saved = page.evaluate("() => app.graph.serialize()")
    by_id = {n["id"]: n for n in saved["nodes"]}
    for node in workflow["nodes"]:  # keep the template's own fields; take positions, sizes and widgets from the app
        fresh = by_id[node["id"]]
        node["pos"], node["size"] = fresh["pos"], fresh["size"]
        if "widgets_values" in fresh:
            node["widgets_values"] = fresh["widgets_values"]
    path.write_text(json.dumps(workflow, indent=2) + "\n")
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running ComfyUI with NegGuide installed (default: start one)")
    parser.add_argument("--dir", type=pathlib.Path, default=ROOT / "example_workflows")
    args = parser.parse_args()
    with cf.comfyui(args.url) as url, cf.frontend(url) as (page, errors):
        for path in sorted(args.dir.glob("*.json")):
            refresh(page, path)
            if errors:
                raise RuntimeError(f"{path.name}: the frontend reported {errors}")


if __name__ == "__main__":
    main()
