"""Tiny PIL charts (line and scatter) for diagnostics images. No comfy and no matplotlib: ComfyUI ships
PIL, and scripts load this file directly by path."""
import math

from PIL import Image, ImageDraw, ImageFont

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
MARGIN = (64, 28, 16, 44)  # left, top, right, bottom


def _font(size=13):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the bitmap font
        return ImageFont.load_default()


def _ticks(lo, hi, log, most=7):
    """Round tick values between lo and hi (log: lo, hi are decades), at most `most` of them."""
    if log:
        every = max(1, math.ceil((math.floor(hi) - math.ceil(lo) + 1) / most))
        return [10.0 ** e for e in range(math.ceil(lo), math.floor(hi) + 1, every)]
    base = 10 ** math.floor(math.log10(max(hi - lo, 1e-12)))
    step = next(base * m for m in (0.1, 0.2, 0.5, 1, 2, 5, 10) if (hi - lo) / (base * m) <= most - 1)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _label(v):
    return f"{v:.0e}" if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4) else f"{v:g}"


class Axes:
    """Maps data to pixels on a white canvas with a frame, ticks, title and axis labels."""

    def __init__(self, size, x_range, y_range, title="", x_label="", y_label="", log_y=False):
        self.image = Image.new("RGB", size, "white")
        self.draw = ImageDraw.Draw(self.image)
        self.font = _font()
        self.log_y = log_y
        fy = (lambda v: math.log10(max(v, 1e-300))) if log_y else float
        self.fy = fy
        self.x0, self.x1 = _widen(*map(float, x_range))
        self.y0, self.y1 = _widen(fy(y_range[0]), fy(y_range[1]))
        w, h = size
        self.box = (MARGIN[0], MARGIN[1], w - MARGIN[2], h - MARGIN[3])
        self._frame(title, x_label, y_label)

    def px(self, x, y):
        left, top, right, bottom = self.box
        fx = (min(max(float(x), self.x0), self.x1) - self.x0) / (self.x1 - self.x0)
        fy = (min(max(self.fy(y), self.y0), self.y1) - self.y0) / (self.y1 - self.y0)
        return left + fx * (right - left), bottom - fy * (bottom - top)

    def _frame(self, title, x_label, y_label):
        d, f = self.draw, self.font
        left, top, right, bottom = self.box
        d.rectangle(self.box, outline="black")
        for v in _ticks(self.x0, self.x1, False):
            x, _ = self.px(v, 10 ** self.y0 if self.log_y else self.y0)
            d.line([(x, bottom), (x, bottom + 4)], fill="black")
            d.text((x, bottom + 6), _label(v), fill="black", font=f, anchor="ma")
        for v in _ticks(self.y0, self.y1, self.log_y):
            _, y = self.px(self.x0, v)
            d.line([(left - 4, y), (left, y)], fill="black")
            d.line([(left + 1, y), (right - 1, y)], fill="#eeeeee")
            d.text((left - 6, y), _label(v), fill="black", font=f, anchor="rm")
        d.text(((left + right) / 2, 6), title, fill="black", font=f, anchor="ma")
        d.text(((left + right) / 2, bottom + 24), x_label, fill="black", font=f, anchor="ma")
        d.text((4, top - 18), y_label, fill="black", font=f)

    def line(self, xs, ys, color, width=2):
        pts = [self.px(x, y) for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]
        if len(pts) > 1:
            self.draw.line(pts, fill=color, width=width, joint="curve")
        elif pts:
            self.dots(xs, ys, color)

    def dots(self, xs, ys, color, radius=2):
        """Scatter; points outside the axes' ranges are left out rather than piled on the frame."""
        for x, y in zip(xs, ys):
            if not (self.x0 <= x <= self.x1 and self.y0 <= self.fy(y) <= self.y1):
                continue
            cx, cy = self.px(x, y)
            self.draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=color)

    def legend(self, entries):
        """entries: [(label, color)], drawn in the top-right corner of the plot box."""
        _, top, right, _ = self.box
        for i, (label, color) in enumerate(entries):
            y = top + 8 + 16 * i
            self.draw.line([(right - 150, y), (right - 130, y)], fill=color, width=3)
            self.draw.text((right - 124, y), label, fill="black", font=self.font, anchor="lm")


def _widen(lo, hi):
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 1.0
    if hi - lo < 1e-12:
        return lo - 0.5, hi + 0.5
    return lo, hi


def stack(images, columns=1):
    """Tiles same-size panels into one image, row by row."""
    w, h = images[0].size
    rows = math.ceil(len(images) / columns)
    out = Image.new("RGB", (w * columns, h * rows), "white")
    for i, im in enumerate(images):
        out.paste(im, ((i % columns) * w, (i // columns) * h))
    return out


def color(i):
    return PALETTE[i % len(PALETTE)]


def sample_curves(xs, panels, size=(640, 280), x_label="step"):
    """Panels stacked vertically; each is (title, y_label, curves, log_y, y_range) where curves[b] holds
    one value per x for sample b (one colour per sample, legend when there are few)."""
    images = []
    for title, y_label, curves, log_y, y_range in panels:
        ax = Axes(size, (xs[0], xs[-1]) if len(xs) else (0, 1), y_range, title, x_label, y_label, log_y)
        for b, ys in enumerate(curves):
            ax.line(xs, ys, color(b))
        if 1 < len(curves) <= 8:
            ax.legend([(f"sample {b}", color(b)) for b in range(len(curves))])
        images.append(ax.image)
    return stack(images)


def dng_chart(sigma, p, lam, lambda0, width=640, height=560, note="", warn=False):
    """DNG diagnostics: posterior p and negative scale lambda per step ([T, B] nested lists), log axes. note: one
    line above the panels (red where warn: a condition under which p is tracked poorly)."""
    flat_p = [v for row in p for v in row]
    flat_l = [v for row in lam for v in row if v > 0]
    title = f"posterior of the unwanted concept (sigma {sigma[0]:.3g} -> {sigma[-1]:.3g})"
    panels = [(title, "p", list(zip(*p)), True, (min(min(flat_p), 0.5), 1.0))]
    lam_title = f"negative scale lambda = {lambda0:g} p / (1 - p)"
    if flat_l:
        panels.append((lam_title, "lambda", list(zip(*lam)), True, (min(flat_l), max(max(flat_l), min(flat_l) * 10))))
    else:  # lambda0 = 0: nothing to put on a log axis
        panels.append((lam_title, "lambda", list(zip(*lam)), False, (0.0, 1.0)))
    strip = 20 if note else 0
    chart = sample_curves(list(range(len(sigma))), panels, size=(width, (height - strip) // 2))
    if not note:
        return chart
    out = Image.new("RGB", (chart.width, chart.height + strip), "white")
    out.paste(chart, (0, strip))
    ImageDraw.Draw(out).text((width / 2, 4), note, fill="#c00000" if warn else "#333333", font=_font(), anchor="ma")
    return out
