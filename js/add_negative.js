// "Add negative (NegGuide)": one more CLIP Text Encode + Add Negative spliced into a node's more_negatives
// chain (the old chain moves into the new node's `previous`). The pair lands just left of the node, in the
// first free rows at the height of its more_negatives input, so every link runs left to right; they are
// titled "Negative N" after the negatives the node already has, and the view pans to them.
export const MENU_LABEL = "Add negative (NegGuide)";
export const CHAIN_INPUT = "more_negatives";
const GAP = 30;
const PROMPTS = ["negative", "positive", "empty_conditioning"];

export function hasChainInput(node) {
    return node?.comfyClass?.startsWith?.("NegGuide") && node.findInputSlot?.(CHAIN_INPUT) >= 0;
}

// The CLIP output that feeds one of the node's prompt encoders, so the new encoder uses the same CLIP.
function findClipSource(node) {
    for (const name of PROMPTS) {
        const slot = node.findInputSlot(name);
        const encoder = slot >= 0 ? node.getInputNode(slot) : null;
        const clipSlot = encoder?.findInputSlot?.("clip") ?? -1;
        const link = clipSlot >= 0 ? encoder.getInputLink(clipSlot) : null;
        if (link) return { node: node.graph.getNodeById(link.origin_id), slot: link.origin_slot };
    }
    return null;
}

// How many negatives the node has now: its own `negative` input plus every Add Negative up the chain.
function countNegatives(node) {
    let count = node.getInputLink(node.findInputSlot("negative")) ? 1 : 0;
    const seen = new Set();
    for (let n = node.getInputNode(node.findInputSlot(CHAIN_INPUT)); n && !seen.has(n.id);) {
        seen.add(n.id);
        if (n.comfyClass !== "NegGuideAddNegative") break;
        count += 1;
        n = n.getInputNode(n.findInputSlot("previous"));
    }
    return count;
}

// The first top y at or below `y` where the rects ([x, width, height]) overlap no node of the graph.
function freeY(graph, rects, y) {
    const title = LiteGraph.NODE_TITLE_HEIGHT;
    for (let moved = true; moved;) {
        moved = false;
        for (const n of graph.nodes) {
            const top = n.pos[1] - title, bottom = n.pos[1] + n.size[1];
            const hit = rects.some(([x, w, h]) => x < n.pos[0] + n.size[0] && n.pos[0] < x + w && y - title < bottom && top < y + h);
            if (hit) {
                y = bottom + GAP + title;
                moved = true;
            }
        }
    }
    return y;
}

// Pans (and zooms out only if needed, never below MIN_SCALE) so the new nodes (all but the last of `nodes`,
// the node they feed) are on screen, and the node they feed too where that still reads.
const MIN_SCALE = 0.5;
export function showNodes(canvas, nodes) {
    const { width, height } = canvas.canvas.getBoundingClientRect();
    const fits = (list) => Math.min(width / extent(list, 0), height / extent(list, 1)) >= MIN_SCALE;
    frame(canvas, fits(nodes) ? nodes : nodes.slice(0, -1), width, height);
}

const extent = (nodes, axis) => Math.max(...nodes.map((n) => n.pos[axis] + n.size[axis])) - Math.min(...nodes.map((n) => n.pos[axis]))
    + 80 + (axis ? LiteGraph.NODE_TITLE_HEIGHT : 0);

function frame(canvas, nodes, width, height) {
    const ds = canvas.ds, title = LiteGraph.NODE_TITLE_HEIGHT, margin = 40;
    const x0 = Math.min(...nodes.map((n) => n.pos[0])) - margin, x1 = Math.max(...nodes.map((n) => n.pos[0] + n.size[0])) + margin;
    const y0 = Math.min(...nodes.map((n) => n.pos[1] - title)) - margin, y1 = Math.max(...nodes.map((n) => n.pos[1] + n.size[1])) + margin;
    const [vx0, vy0] = ds.convertCanvasToOffset([0, 0]), [vx1, vy1] = ds.convertCanvasToOffset([width, height]);
    if (x0 >= vx0 && x1 <= vx1 && y0 >= vy0 && y1 <= vy1) return;
    ds.scale = Math.min(ds.scale, width / (x1 - x0), height / (y1 - y0));
    ds.offset = [width / ds.scale / 2 - (x0 + x1) / 2, height / ds.scale / 2 - (y0 + y1) / 2];
    canvas.setDirty(true, true);
}

export function addNegative(node, canvas) {
    const graph = node.graph;
    const target = node.findInputSlot(CHAIN_INPUT);
    if (!graph || target < 0) return null;
    graph.beforeChange();
    const previous = graph.getLink(node.inputs[target].link);
    const clip = findClipSource(node);
    const number = countNegatives(node) + 1;
    const add = LiteGraph.createNode("NegGuideAddNegative");
    const encoder = clip?.node ? LiteGraph.createNode("CLIPTextEncode") : null;
    add.title = `Negative ${number} (weight)`;

    // Right to left from the node: Add Negative, then its prompt box, level with the more_negatives input.
    const addX = node.pos[0] - add.size[0] - GAP;
    const rects = [[addX, add.size[0], add.size[1]]];
    if (encoder) {
        encoder.title = `Negative ${number}`;
        encoder.size = [Math.max(encoder.size[0], 320), Math.max(encoder.size[1], 120)];
        rects.push([addX - encoder.size[0] - GAP, encoder.size[0], encoder.size[1]]);
    }
    const slotY = node.getConnectionPos?.(true, target)?.[1] ?? node.pos[1];
    const y = freeY(graph, rects, slotY - LiteGraph.NODE_SLOT_HEIGHT / 2);  // output level with the input
    add.pos = [addX, y];
    graph.add(add);
    if (previous) graph.getNodeById(previous.origin_id).connect(previous.origin_slot, add, add.findInputSlot("previous"));
    add.connect(0, node, target);
    const placed = [add];
    if (encoder) {
        encoder.pos = [rects[1][0], y];
        graph.add(encoder);
        clip.node.connect(clip.slot, encoder, encoder.findInputSlot("clip"));
        encoder.connect(0, add, add.findInputSlot("conditioning"));
        placed.push(encoder);
    }
    placed.push(node);
    graph.afterChange();
    if (canvas) showNodes(canvas, placed);
    graph.setDirtyCanvas(true, true);
    return add;
}
