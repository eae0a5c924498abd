"use strict";
/**
 * fogmesh-data-in and fogmesh-data-out: an app's data stream,
 * `fm/v1/data/{tenant}/{app}/{stream}`. The in node emits each message the stream carries;
 * the out node writes `msg.payload` to the stream (objects as JSON, strings and Buffers as
 * they are), as a sensor would.
 */
const protocol = require("./lib/protocol");

function decode(payload, format) {
    if (format === "buffer") return { value: payload };
    if (format === "string") return { value: payload.toString("utf8") };
    return protocol.parseJson(payload);
}

function encode(value) {
    if (Buffer.isBuffer(value) || typeof value === "string") return value;
    if (value === undefined || value === null) return "";
    return JSON.stringify(value);
}

module.exports = function (RED) {
    function FogmeshDataNode(config, mode) {
        RED.nodes.createNode(this, config);
        const node = this;
        node.broker = RED.nodes.getNode(config.broker);
        node.mode = mode;
        node.format = config.format || "json";
        if (!node.broker) {
            node.status({ fill: "red", shape: "ring", text: "no broker account" });
            return;
        }
        const tenant = config.tenant || node.broker.tenant;
        node.broker.register(node);

        if (node.mode === "subscribe") {
            let filter;
            try {
                filter = protocol.dataTopic(tenant, config.app, config.stream, true);
            } catch (err) {
                node.status({ fill: "red", shape: "ring", text: err.message.slice(0, 40) });
                node.error(err.message);
                return;
            }
            const handler = {
                message(topic, payload) {
                    const decoded = decode(payload, node.format);
                    if (decoded.error) {
                        node.warn(`ignored a payload on ${topic} that is not JSON: ${decoded.error}`);
                        return;
                    }
                    const [, , , , app, stream] = topic.split("/");
                    node.send({ topic, app, stream, payload: decoded.value });
                },
                refused(topic) {
                    node.status({ fill: "red", shape: "ring", text: `refused: ${topic}` });
                },
            };
            node.broker.subscribe(filter, handler);
            node.on("close", () => {
                node.broker.unsubscribe(filter, handler);
                node.broker.deregister(node);
            });
            return;
        }

        node.on("input", (msg, send, done) => {
            let topic;
            try {
                topic = protocol.dataTopic(tenant, msg.app || config.app, msg.stream || config.stream, false);
            } catch (err) {
                done(err);
                return;
            }
            node.broker.publish(topic, encode(msg.payload), (err) => done(err || undefined));
        });
        node.on("close", () => node.broker.deregister(node));
    }

    RED.nodes.registerType("fogmesh-data-in", function (config) {
        FogmeshDataNode.call(this, config, "subscribe");
    });
    RED.nodes.registerType("fogmesh-data-out", function (config) {
        FogmeshDataNode.call(this, config, "publish");
    });
};
