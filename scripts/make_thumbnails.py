"""Dev script: draws the template thumbnails example_workflows/<name>.jpg (the template browser shows them; the
README too) by opening each template in the real frontend at 1600x1000, the way a user opens it, and the full-size
picture of the Perp-Neg template in the README (docs/img/perp_neg_workflow.png).

    python scripts/make_thumbnails.py [--url http://127.0.0.1:8188]
"""
import argparse
import importlib.util
import io
import json
import pathlib

from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("comfy_frontend", ROOT / "scripts" / "comfy_frontend.py")
cf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cf)
WIDTH = 960  # sharp on the README, small for the package
SHOWN = "Perp-Neg guider with two negatives"  # the README's full-size picture

def screenshot(page, path: pathlib.Path) -> Image.Image:
    page.evaluate("async ([wf, name]) => { await app.loadGraphData(wf, true, true, name); }",
                  [json.loads(path.read_text()), path.stem])
    page.wait_for_timeout(500)
    return Image.open(io.BytesIO(page.screenshot(clip=page.evaluate(cf.VISIBLE_CANVAS_JS)))).convert("RGB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running ComfyUI with NegGuide installed (default: start one)")
    parser.add_argument("--dir", type=pathlib.Path, default=ROOT / "example_workflows")
    parser.add_argument("--readme-picture", type=pathlib.Path, default=ROOT / "docs" / "img" / "perp_neg_workflow.png")
    args = parser.parse_args()
    with cf.comfyui(args.url) as url, cf.frontend(url, pixel_ratio=1.5) as (page, errors):
        for path in sorted(args.dir.glob("*.json")):
            image = screenshot(page, path)
            if errors:
                raise RuntimeError(f"{path.name}: the frontend reported {errors}")
            if path.stem == SHOWN:
                image.save(args.readme_picture, optimize=True)
                print(f"wrote {args.readme_picture}")
            image.thumbnail((WIDTH, WIDTH))
            image.save(path.with_suffix(".jpg"), quality=85)
            print(f"wrote {path.with_suffix('.jpg')}")


if __name__ == "__main__":
    main()
