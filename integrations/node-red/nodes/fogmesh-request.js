"use strict";
/**
 * fogmesh-request: send any fogmesh command and emit its answer. The node sets the request's
 * correlation_id and reply_to (the account's reply topic), matches the answer by correlation
 * id and gives up after the timeout. Output 1: ok answers; output 2: error answers and
 * timeouts (a local `{ok: false, error: {code: "timeout"}}`).
 */
module.exports = function (RED) {
    function FogmeshRequestNode(config) {
        RED.nodes.createNode(this, config);
        const node = this;
        node.broker = RED.nodes.getNode(config.broker);
        node.command = config.command || "";
        node.timeoutS = Number(config.timeout) > 0 ? Number(config.timeout) : 30;
        if (!node.broker) {
            node.status({ fill: "red", shape: "ring", text: "no broker account" });
            return;
        }
        node.broker.register(node);
        let inFlight = 0;

        node.on("input", (msg, send, done) => {
            const command = typeof msg.command === "string" && msg.command ? msg.command : node.command;
            const timeoutS = Number(msg.timeout) > 0 ? Number(msg.timeout) : node.timeoutS;
            let sent;
            try {
                sent = node.broker.request(
                    command,
                    msg.payload,
                    timeoutS * 1000,
                    (reply) => {
                        const out = RED.util.cloneMessage(msg);
                        out.payload = reply;
                        out.topic = sent.topic;
                        out.command = command;
                        out.correlation_id = reply.correlation_id;
                        if (reply.final !== false) {
                            inFlight -= 1;
                            showCount();
                        }
                        send(reply.ok ? [out, null] : [null, out]);
                    },
                    () => {
                        inFlight -= 1;
                        showCount();
                        const out = RED.util.cloneMessage(msg);
                        out.topic = sent.topic;
                        out.command = command;
                        out.correlation_id = sent.correlationId;
                        out.payload = {
                            correlation_id: sent.correlationId,
                            ok: false,
                            error: { code: "timeout", message: `no answer on ${command} within ${timeoutS} s` },
                        };
                        node.warn(`no answer to ${command} (${sent.correlationId}) within ${timeoutS} s`);
                        send([null, out]);
                    },
                );
            } catch (err) {
                node.status({ fill: "red", shape: "ring", text: err.message.slice(0, 40) });
                done(err);
                return;
            }
            inFlight += 1;
            showCount();
            done();
        });

        function showCount() {
            node.status(
                inFlight > 0
                    ? { fill: "blue", shape: "dot", text: `waiting for ${inFlight}` }
                    : { fill: "green", shape: "dot", text: "connected" },
            );
        }

        node.on("close", () => node.broker.deregister(node));
    }

    RED.nodes.registerType("fogmesh-request", FogmeshRequestNode);
};
