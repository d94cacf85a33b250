// NegGuide frontend: the "Add negative (NegGuide)" node menu entry (add_negative.js), the azimuth dial on View
// Conditioning (view_dial.js), the live p / lambda curve on the DNG nodes (dng_live.js), and tidying up the report
// preview when a Debias View Prompts node is deleted.
import { app } from "../../scripts/app.js";
import { MENU_LABEL, addNegative, hasChainInput } from "./add_negative.js";
import { MIN_WIDTH, makeDial } from "./view_dial.js";
import { DNG_NODES, listen, makeLiveCurve } from "./dng_live.js";

const menuItem = (node) => ({ content: MENU_LABEL, callback: () => addNegative(node, app.canvas) });
// Frontends that collect getNodeMenuItems from extensions also deprecate patching getExtraMenuOptions:
// use exactly one of the two, so the entry never shows twice.
const HAS_MENU_HOOK = typeof app.collectNodeMenuItems === "function";

// The Preview Any nodes a deleted Debias View Prompts fed: its report would otherwise stay behind, empty (an
// error on every run) or, with the frontend's "bypass links on delete", showing the prompt under a wrong title.
function removeReportPreviews(graph, ids) {
    for (const id of ids) {
        const preview = graph?.getNodeById(id);
        if (preview?.comfyClass === "PreviewAny") graph.remove(preview);
    }
}

app.registerExtension({
    name: "NegGuide",
    setup() {
        listen(app);
    },
    getNodeMenuItems(node) {
        return hasChainInput(node) ? [menuItem(node)] : [];
    },
    async beforeRegisterNodeDef(nodeType, nodeData) {
        if (!HAS_MENU_HOOK && nodeData.input?.optional?.more_negatives && nodeData.name.startsWith("NegGuide")) {
            const original = nodeType.prototype.getExtraMenuOptions;
            nodeType.prototype.getExtraMenuOptions = function (canvas, options) {
                const result = original?.apply(this, arguments);
                options.push(menuItem(this));
                return result;
            };
        }
        if (nodeData.name === "NegGuideDebiasViewPrompts") {
            // graph.remove() unplugs the outputs (telling us where they went) just before onRemoved, in the same
            // task; what was unplugged earlier by hand is forgotten at the end of its task.
            const onConnectionsChange = nodeType.prototype.onConnectionsChange;
            nodeType.prototype.onConnectionsChange = function (type, slot, connected, link) {
                if (type === LiteGraph.OUTPUT && !connected && link) {
                    (this.negguideUnplugged ??= new Set()).add(link.target_id);
                    setTimeout(() => this.negguideUnplugged.clear());
                }
                return onConnectionsChange?.apply(this, arguments);
            };
            const onRemoved = nodeType.prototype.onRemoved;
            nodeType.prototype.onRemoved = function () {
                const graph = this.graph, ids = [...(this.negguideUnplugged ?? [])];
                setTimeout(() => removeReportPreviews(graph, ids));  // once the deletion (and any re-linking) is done
                return onRemoved?.apply(this, arguments);
            };
        }
        if (DNG_NODES.includes(nodeData.name)) {
            const onNodeCreated = nodeType.prototype.onNodeCreated;
            nodeType.prototype.onNodeCreated = function () {
                const result = onNodeCreated?.apply(this, arguments);
                this.addCustomWidget(makeLiveCurve(this));
                this.setSize([Math.max(this.size[0], 360), this.computeSize()[1]]);
                return result;
            };
        }
        if (nodeData.name === "NegGuideViewConditioning") {
            const onNodeCreated = nodeType.prototype.onNodeCreated;
            nodeType.prototype.onNodeCreated = function () {
                const result = onNodeCreated?.apply(this, arguments);
                this.addCustomWidget(makeDial(this));
                this.setSize([Math.max(this.size[0], MIN_WIDTH), this.computeSize()[1]]);
                return result;
            };
        }
    },
});
