// NegGuide frontend helper: "Add negative (NegGuide)" in the context menu of every NegGuide node that has a
// more_negatives input. It appends one Add Negative node to the chain (the old chain goes into its
// `previous`) plus a CLIP Text Encode on the same CLIP, so the next negative is one click and one prompt away.
import { app } from "../../scripts/app.js";

const MENU_LABEL = "Add negative (NegGuide)";
const CHAIN_INPUT = "more_negatives";
const GAP = 30;

function hasChainInput(nodeData) {
    const inputs = nodeData?.input ?? {};
    return nodeData?.name?.startsWith("NegGuide") && [inputs.required, inputs.optional].some((g) => g && CHAIN_INPUT in g);
}

// The CLIP output that feeds one of the node's prompt encoders, so the new encoder uses the same CLIP.
function findClipSource(node) {
    for (const name of ["negative", "positive", "empty_conditioning"]) {
        const slot = node.findInputSlot(name);
        const encoder = slot >= 0 ? node.getInputNode(slot) : null;
        const clipSlot = encoder?.findInputSlot?.("clip") ?? -1;
        const link = clipSlot >= 0 ? encoder.getInputLink(clipSlot) : null;
        if (link) return { node: node.graph.getNodeById(link.origin_id), slot: link.origin_slot };
    }
    return null;
}

// The first y at or below `y` where the new nodes (rects of [x, width, height]) overlap no existing node.
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

export function addNegative(node) {
    const graph = node.graph;
    const target = node.findInputSlot(CHAIN_INPUT);
    if (!graph || target < 0) return null;
    graph.beforeChange();
    const previous = graph.getLink(node.inputs[target].link);
    const clip = findClipSource(node);
    const add = LiteGraph.createNode("NegGuideAddNegative");
    const encoder = clip?.node ? LiteGraph.createNode("CLIPTextEncode") : null;

    // In the node's column, below it, with the prompt box on the left: the first spot where nothing is hidden.
    const x = node.pos[0];
    const rects = [[x, add.size[0], add.size[1]]];
    if (encoder) rects.push([x - encoder.size[0] - GAP, encoder.size[0], encoder.size[1]]);
    const y = freeY(graph, rects, node.pos[1] + node.size[1] + GAP + LiteGraph.NODE_TITLE_HEIGHT);
    add.pos = [x, y];
    graph.add(add);
    if (previous) graph.getNodeById(previous.origin_id).connect(previous.origin_slot, add, add.findInputSlot("previous"));
    add.connect(0, node, target);
    if (encoder) {
        encoder.pos = [x - encoder.size[0] - GAP, y];
        graph.add(encoder);
        clip.node.connect(clip.slot, encoder, encoder.findInputSlot("clip"));
        encoder.connect(0, add, add.findInputSlot("conditioning"));
    }
    graph.afterChange();
    graph.setDirtyCanvas(true, true);
    return add;
}

app.registerExtension({
    name: "NegGuide.AddNegative",
    async beforeRegisterNodeDef(nodeType, nodeData) {
        if (!hasChainInput(nodeData)) return;
        const original = nodeType.prototype.getExtraMenuOptions;
        nodeType.prototype.getExtraMenuOptions = function (canvas, options) {
            const result = original?.apply(this, arguments);
            options.push({ content: MENU_LABEL, callback: () => addNegative(this) });
            return result;
        };
    },
});
