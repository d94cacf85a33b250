// Live DNG curve: while a DNG guider or sampler runs, the server sends the tracked posterior p and the negative scale
// lambda per step per image ("negguide.dng" events from nodes/dng.py); this widget draws them on the node itself.
import { api } from "../../scripts/api.js";

export const DNG_NODES = ["NegGuideDNGGuider", "NegGuideDNGSampler"];
const HEIGHT = 150;
const COLORS = ["#4e9ee8", "#e8604e", "#5ec46a", "#e8b24e", "#a57be0", "#c98a5e", "#e07bc2", "#4ed0d8"];

// The node receives every frame of the run it started: the latest is drawn, the count tells the tests it was live.
export function listen(app) {
    api.addEventListener("negguide.dng", ({ detail }) => {
        const node = app.graph?.getNodeById(Number(detail.node)) ?? app.graph?.getNodeById(detail.node);
        if (!node) return;
        node.negguideDng = detail;
        node.negguideDngFrames = (node.negguideDngFrames ?? 0) + 1;
        node.setDirtyCanvas(true, true);
    });
}

function axes(ctx, x, y, w, h) {
    ctx.strokeStyle = "#666";
    ctx.strokeRect(x, y, w, h);
    ctx.fillStyle = "#999";
    ctx.font = "10px sans-serif";
    ctx.textAlign = "right";
    ctx.fillText("1", x - 3, y + 8);
    ctx.fillText("0", x - 3, y + h);
}

// One polyline per image: values[t][b] mapped to [0, top] on the y axis.
function curves(ctx, values, top, x, y, w, h, dashed) {
    const steps = values.length, batch = values[0]?.length ?? 0;
    ctx.setLineDash(dashed ? [4, 3] : []);
    for (let b = 0; b < batch; b++) {
        ctx.strokeStyle = COLORS[b % COLORS.length];
        ctx.beginPath();
        values.forEach((row, t) => {
            const px = x + (steps > 1 ? (t / (steps - 1)) * w : w / 2);
            const py = y + h - Math.min(row[b] / top, 1) * h;
            t ? ctx.lineTo(px, py) : ctx.moveTo(px, py);
        });
        ctx.stroke();
    }
    ctx.setLineDash([]);
}

export function makeLiveCurve(node) {
    return {
        name: "dng_live", type: "negguide_dng_live", value: null, serialize: false, options: { serialize: false },
        computeSize: (width) => [width, HEIGHT],
        draw(ctx, _node, width, y) {
            const data = node.negguideDng;
            const [x, w, h] = [30, width - 45, HEIGHT - 34];
            ctx.save();
            axes(ctx, x, y + 16, w, h);
            ctx.textAlign = "left";
            ctx.fillStyle = "#ccc";
            if (!data?.p?.length) {
                ctx.fillText("p (solid) and lambda (dashed) per step appear here while sampling", x, y + 10);
            } else {
                const lam = data.lambda.flat();
                const top = Math.max(...lam, 1e-12);
                ctx.fillText(`step ${data.p.length}: p ${data.p.at(-1).map((v) => v.toFixed(3)).join(", ")}` +
                             `   lambda max ${top.toFixed(2)}`, x, y + 10);
                curves(ctx, data.p, 1, x, y + 16, w, h, false);
                curves(ctx, data.lambda, top, x, y + 16, w, h, true);
            }
            ctx.restore();
        },
    };
}
