"""Dev script: writes locales/en/nodeDefs.json (ComfyUI's i18n file for the node names, descriptions and
tooltips) from a running ComfyUI's /object_info, so translators start from exactly what the nodes say.

    python scripts/make_locales.py --url http://127.0.0.1:8188

ComfyUI serves <pack>/locales/<lang>/nodeDefs.json through /i18n; the frontend looks up
nodeDefs.<node id>.display_name / description / inputs.<name>.name|tooltip / outputs.<index>.name|tooltip.
"""
import argparse
import json
import pathlib
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
PREFIX = "NegGuide"


def node_defs(object_info: dict) -> dict:
    defs = {}
    for node_id, info in sorted(object_info.items()):
        if not node_id.startswith(PREFIX):
            continue
        inputs = {}
        for group in ("required", "optional"):
            for name, spec in info["input"].get(group, {}).items():
                opts = spec[1] if len(spec) > 1 else {}
                inputs[name.replace(".", "_")] = {"name": name, **({"tooltip": opts["tooltip"]} if opts.get("tooltip") else {})}
        tips = info.get("output_tooltips") or [None] * len(info["output"])
        outputs = {str(i): {"name": name, **({"tooltip": tip} if tip else {})}
                   for i, (name, tip) in enumerate(zip(info["output_name"], tips))}
        defs[node_id] = {"display_name": info["display_name"], "description": info["description"],
                         "inputs": inputs, "outputs": outputs}
    return defs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="a running ComfyUI with NegGuide installed")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "locales" / "en" / "nodeDefs.json")
    args = parser.parse_args()
    with urllib.request.urlopen(args.url.rstrip("/") + "/object_info", timeout=60) as r:  # noqa: S310 (a URL the user gives)
        defs = node_defs(json.load(r))
    if not defs:
        raise SystemExit(f"no {PREFIX} nodes in {args.url}/object_info: is the pack installed there?")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(defs, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}: {len(defs)} nodes")


if __name__ == "__main__":
    main()
