// The azimuth dial of "View Conditioning (NegGuide)": the object seen from above, one dot per image of the
// batch at its camera azimuth (front at the bottom), and per image the two Perp-Neg view negatives with their
// weights, redrawn whenever a widget changes. Dragging a dot rewrites that entry of the azimuths widget.
// The weights are a display-only port of guiders/views.py (view_mix); the browser test compares them.

// threestudio's f(r) = a exp(-b r) + c constants and stable-dreamfusion's, as in guiders/views.py.
const F_FS = [4.0, 0.5, -2.426], F_SB = [1.0, 0.5, -0.606], F_FSB = [1.0, 0.5, 0.967];
const SDF_W = 2.0, SDF_FRONT_DECAY = 2.0, SDF_SIDE_DECAY = 10.0;
const COLORS = { front: "#4caf50", side: "#ffb300", back: "#e53935", overhead: "#42a5f5" };
const DIAL_HEIGHT = 190, SNAP = 5;

const decay = ([a, b, c], r) => a * Math.exp(-b * r) + c;
const clip01 = (x) => Math.min(Math.max(x, 0), 1);
export const wrapAzimuth = (a) => {
    const w = ((Number(a) + 180) % 360 + 360) % 360 - 180;
    return w >= 180 ? -180 : w;
};

function branchWeights(schedule, frontBranch, r) {
    if (schedule === "stable-dreamfusion") {
        if (frontBranch) return [r > 0.8 ? 0 : Math.exp(-r * SDF_FRONT_DECAY) * SDF_W, r < 0.2 ? 0 : Math.exp(-(1 - r) * SDF_SIDE_DECAY) * SDF_W];
        return [r > 0.8 ? 0 : Math.exp(-r * SDF_SIDE_DECAY) * SDF_W / 2, SDF_W];
    }
    return frontBranch ? [decay(F_FS, r), decay(F_FS, 1 - r)] : [decay(F_SB, r), decay(F_FSB, r)];
}

// One camera: its view label and the two (view, weight) negatives, as guiders/views.py view_mix computes them.
export function viewMix(azimuth, { elevation = 0, schedule = "threestudio", front_range = 45, back_range = 45,
                                   overhead_threshold = 60, weight_scale = 1 } = {}) {
    const a = wrapAzimuth(azimuth), abs = Math.abs(a);
    if (elevation > overhead_threshold) return { azimuth: a, view: "overhead", negatives: [["front", 0], ["side", 0]] };
    const view = abs < front_range ? "front" : abs > 180 - back_range ? "back" : "side";
    const front = abs < 90;
    const r = front ? clip01(1 - abs / (2 * front_range)) : clip01((180 - abs) / (2 * back_range));
    const w = branchWeights(schedule, front, r);
    const names = front ? ["front", "side"] : ["side", "front"];
    return { azimuth: a, view, negatives: names.map((n, i) => [n, Math.max(0, w[i] * weight_scale)]) };
}

// "0, 90, 180, 270" -> numbers (invalid entries skipped: the node itself reports them); views > 0 = evenly spaced.
export function parseAzimuths(text, views = 0) {
    const values = String(text ?? "").trim().split(/[,;\s]+/).filter(Boolean).map(Number).filter(Number.isFinite);
    if (views > 0) return Array.from({ length: views }, (_, i) => (values[0] ?? 0) + (360 * i) / views);
    return values;
}

const widgetValue = (node, name) => node.widgets?.find((w) => w.name === name)?.value;
const settings = (node) => Object.fromEntries(["elevation", "schedule", "front_range", "back_range", "overhead_threshold", "weight_scale"]
    .map((k) => [k, widgetValue(node, k)]).filter(([, v]) => v !== undefined));

export function dialState(node) {
    const views = widgetValue(node, "views") ?? 0;
    const azimuths = parseAzimuths(widgetValue(node, "azimuths"), views);
    const options = settings(node);
    return { views, azimuths, mixes: azimuths.map((a) => viewMix(a, options)) };
}

const fmt = (x) => (Math.round(x * 10) / 10).toString();

// The azimuths widget with entry i set to `degrees` (for an even turnaround, i = 0 sets the start).
function setAzimuth(node, index, degrees) {
    const widget = node.widgets.find((w) => w.name === "azimuths");
    const { views, azimuths } = dialState(node);
    const list = views > 0 ? [degrees] : azimuths.map((a, i) => (i === index ? degrees : a));
    const value = list.map(fmt).join(", ");
    if (value === widget.value) return;
    widget.value = value;
    widget.callback?.(value);
    node.setDirtyCanvas(true, true);
}

export const MIN_WIDTH = 500;  // room for the dial and the strip

export function makeDial(node) {
    const layout = { cx: 0, cy: 0, R: 0 };
    const dotAt = (deg) => {
        const t = (deg * Math.PI) / 180;
        return [layout.cx + layout.R * Math.sin(t), layout.cy + layout.R * Math.cos(t)];
    };
    let dragging = -1;
    return {
        name: "azimuth_dial", type: "negguide_azimuth_dial", value: null, serialize: false, options: { serialize: false },
        computeSize: (width) => [width, DIAL_HEIGHT],
        dots: () => dialState(node).mixes.map((m) => dotAt(m.azimuth)),  // node-local, as last drawn
        draw(ctx, node, width, y) {
            const { views, azimuths, mixes } = dialState(node);
            Object.assign(layout, { cx: 15 + (DIAL_HEIGHT - 30) / 2, cy: y + DIAL_HEIGHT / 2, R: (DIAL_HEIGHT - 50) / 2, y });
            ctx.save();
            ctx.strokeStyle = "#888";
            ctx.lineWidth = 1;
            ctx.beginPath();
            ctx.arc(layout.cx, layout.cy, layout.R, 0, 2 * Math.PI);
            ctx.stroke();
            ctx.fillStyle = "#aaa";
            ctx.font = "10px sans-serif";
            ctx.textAlign = "center";
            for (const [deg, label] of [[0, "front"], [90, "90"], [180, "back"], [-90, "-90"]]) {
                const [x, yy] = [layout.cx + (layout.R + 13) * Math.sin((deg * Math.PI) / 180), layout.cy + (layout.R + 13) * Math.cos((deg * Math.PI) / 180)];
                ctx.fillText(label, x, yy + 3);
            }
            ctx.fillStyle = "#666";  // the object
            ctx.fillRect(layout.cx - 6, layout.cy - 6, 12, 12);
            mixes.forEach((m, i) => {
                const [x, yy] = dotAt(m.azimuth);
                ctx.strokeStyle = ctx.fillStyle = COLORS[m.view];
                ctx.beginPath();
                ctx.moveTo(layout.cx, layout.cy);
                ctx.lineTo(x, yy);
                ctx.stroke();
                ctx.beginPath();
                ctx.arc(x, yy, i === dragging ? 8 : 6, 0, 2 * Math.PI);
                ctx.fill();
                ctx.fillText(String(i + 1), x + 10 * Math.sign(x - layout.cx || 1), yy - 8);  // beside the dot
            });
            // The strip: per image its azimuth as typed, its view and the two negative weights.
            ctx.textAlign = "left";
            ctx.font = "10px monospace";
            const left = layout.cx + layout.R + 30, line = 14;
            ctx.fillStyle = "#ccc";
            ctx.fillText(views > 0 ? `${views} views, even` : "image  azimuth  view   negatives (weight)", left, y + 14);
            mixes.slice(0, Math.floor((DIAL_HEIGHT - 20) / line)).forEach((m, i) => {
                const negs = m.negatives.map(([v, w]) => `${v} ${w.toFixed(2)}`).join(", ");
                ctx.fillStyle = COLORS[m.view];
                ctx.fillText(`#${i + 1}  ${fmt(azimuths[i]).padStart(6)}°  ${m.view.padEnd(8)} ${negs}`, left, y + 14 + line * (i + 1));
            });
            ctx.restore();
        },
        mouse(event, [x, y], node) {
            const type = event.type;
            if (type === "pointerdown") {
                const { mixes } = dialState(node);
                dragging = mixes.findIndex((m) => Math.hypot(dotAt(m.azimuth)[0] - x, dotAt(m.azimuth)[1] - y) < 12);
                return dragging >= 0;
            }
            if (dragging < 0) return false;
            const deg = Math.round((Math.atan2(x - layout.cx, y - layout.cy) * 180) / Math.PI / SNAP) * SNAP;
            setAzimuth(node, dragging, ((deg % 360) + 360) % 360);
            if (type === "pointerup") dragging = -1;
            return true;
        },
    };
}
