"""Plot the view negative weights and prompt coefficients against azimuth (guiders/views.py).

    python scripts/plot_view_weights.py [--out docs/img/view_weights.png]

Columns: threestudio (front range 45, the reference), threestudio with the paper's narrower front
(22.5), stable-dreamfusion. Top row: the Perp-Neg weight of the front and side negatives. Bottom row:
how much of each view prompt the positive holds. PIL only (via support/plot.py, loaded by path).
"""
import argparse
import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load(name, path, **kw):
    spec = importlib.util.spec_from_file_location(name, path, **kw)
    sys.modules[name] = module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the pack as ComfyUI loads it (a package from its folder); the repo root never goes on sys.path
load("negguide", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
from negguide.guiders.views import view_mix  # noqa: E402

plot = load("negguide_plot", ROOT / "support" / "plot.py")
COLORS = {"front": plot.color(0), "side": plot.color(2), "back": plot.color(1)}
COLUMNS = [("threestudio, front range 45 (default)", "threestudio", 45.0),
           ("threestudio, front range 22.5 (paper)", "threestudio", 22.5),
           ("stable-dreamfusion, front range 45", "stable-dreamfusion", 45.0)]
SIZE = (560, 300)


def guides(ax):
    """Light vertical lines at the pure views, labelled inside the plot."""
    _, top, _, bottom = ax.box
    for a, name in ((-180, "back"), (-90, "side"), (0, "front"), (90, "side"), (180, "back")):
        x, _ = ax.px(a, ax.y0)
        ax.draw.line([(x, top + 1), (x, bottom - 1)], fill="#cccccc")
        ax.draw.text((x - 3, bottom - 4) if a == 180 else (x + 3, bottom - 4), name, fill="#888888", font=ax.font,
                     anchor="rb" if a == 180 else "lb")


def panels():
    xs = [a / 2 for a in range(-360, 361)]
    top, bottom = [], []
    for title, schedule, front in COLUMNS:
        mixes = [view_mix(a, schedule=schedule, front_range=front) for a in xs]
        ax = plot.Axes(SIZE, (-180, 180), (0, 2.6), title, "azimuth (degrees)", "negative weight w")  # room for the legend
        guides(ax)
        for view in ("front", "side"):
            ax.line(xs, [dict(m.negatives).get(view, 0.0) for m in mixes], COLORS[view])
        ax.legend([("front negative", COLORS["front"]), ("side negative", COLORS["side"])])
        top.append(ax.image)
        ax = plot.Axes(SIZE, (-180, 180), (0, 1.35), "", "azimuth (degrees)", "share of the view prompt")
        guides(ax)
        for view in ("front", "side", "back"):
            ax.line(xs, [m.positive.get(view, 0.0) for m in mixes], COLORS[view])
        ax.legend([(f"{v} prompt", COLORS[v]) for v in ("front", "side", "back")])
        bottom.append(ax.image)
    return plot.stack(top + bottom, columns=len(COLUMNS))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "img" / "view_weights.png")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    panels().save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
