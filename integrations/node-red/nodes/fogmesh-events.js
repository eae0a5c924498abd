"use strict";
/**
 * fogmesh-events: fogmesh events as messages, filtered by kind. A tenant reads its own events
 * (`fm/v1/events/tenants/{tenant}/{kind}`); fleet events (`fm/v1/events/fleet/{kind}`: node
 * lost, site unreachable, ...) and every tenant's (tenant `+`) need an operator account.
 */
const protocol = require("./lib/protocol");

function parseKinds(value) {
    const list = Array.isArray(value) ? value : String(value || "").split(",");
    return list.map((k) => String(k).trim()).filter(Boolean);
}

module.exports = function (RED) {
    function FogmeshEventsNode(config) {
        RED.nodes.createNode(this, config);
        const node = this;
        node.broker = RED.nodes.getNode(config.broker);
        if (!node.broker) {
            node.status({ fill: "red", shape: "ring", text: "no broker account" });
            return;
        }
        let filters;
        try {
            filters = protocol.eventFilters(
                config.scope || "tenant",
                config.tenant || node.broker.tenant,
                parseKinds(config.kinds),
            );
        } catch (err) {
            node.status({ fill: "red", shape: "ring", text: err.message.slice(0, 40) });
            node.error(err.message);
            return;
        }
        const handler = {
            message(topic, payload) {
                const parsed = protocol.parseJson(payload);
                const problem = parsed.error || protocol.checkEvent(parsed.value);
                if (problem) {
                    node.warn(`ignored a malformed event on ${topic}: ${problem}`);
                    return;
                }
                const event = parsed.value;
                node.send({ topic, kind: event.kind, payload: event });
            },
            refused(filter) {
                node.status({ fill: "red", shape: "ring", text: `refused: ${filter}` });
            },
        };
        node.broker.register(node);
        for (const filter of filters) node.broker.subscribe(filter, handler);
        node.on("close", () => {
            for (const filter of filters) node.broker.unsubscribe(filter, handler);
            node.broker.deregister(node);
        });
    }

    RED.nodes.registerType("fogmesh-events", FogmeshEventsNode);
};

module.exports.parseKinds = parseKinds;
