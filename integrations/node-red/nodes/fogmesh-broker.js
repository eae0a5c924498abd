"use strict";
/**
 * fogmesh-broker: the config node for one fogmesh broker account. It owns the MQTT connection
 * every fogmesh node of that account shares: one reply topic, the pending requests by
 * correlation id, and the subscriptions of the events and data nodes (one per filter, routed
 * here, so a broker never sees two overlapping filters from one Node-RED node).
 * The username and password are credentials: Node-RED keeps them in flows_cred.json, never in
 * flows.json.
 */
const fs = require("fs");
const mqtt = require("mqtt");
const protocol = require("./lib/protocol");

const BACKOFF_BASE_S = 0.5;
const BACKOFF_CAP_S = 30;
const CONNECT_TIMEOUT_MS = 10000;

/**
 * A property's value, or "" when unset. Node-RED replaces a whole-value `${VAR}` with the
 * variable (so a flow can say `${FOGMESH_PORT}`, as fleet.env exports it) but leaves the text
 * as it is when the variable is not set: that counts as unset too.
 */
function setting(value) {
    if (value === undefined || value === null) return "";
    const text = String(value).trim();
    return /^\$\{\S+\}$/.test(text) ? "" : text;
}

module.exports = function (RED) {
    function FogmeshBrokerNode(config) {
        RED.nodes.createNode(this, config);
        const node = this;
        const creds = node.credentials || {};
        node.host = setting(config.host) || "127.0.0.1";
        node.port = Number(setting(config.port)) || 1883;
        node.tls = Boolean(config.tls);
        node.caFile = setting(config.caFile);
        node.username = creds.username || "";
        // a tenant's requests go under its name; an operator's default to their own username
        node.tenant = setting(config.tenant) || node.username;
        // tenant and node accounts may use only client ids starting with their username
        node.clientId =
            setting(config.clientId) || `${node.username || "fogmesh"}-nodered-${protocol.newId().slice(0, 8)}`;
        node.replyTo = null;
        node.connected = false;

        const users = new Set();
        const subscriptions = new Map(); // filter -> Set of handlers
        const pending = new Map(); // correlation id -> {onReply, onTimeout, timer, timeoutMs}
        let client = null;
        let attempt = 0;
        let retryTimer = null;
        let closing = false;

        function statusAll(status) {
            for (const user of users) user.status(status);
        }

        function subscribe(filters) {
            if (!client || !node.connected || !filters.length) return;
            client.subscribe(filters, { qos: 1 }, (err, granted) => {
                if (err) {
                    node.warn(`subscribe failed: ${err.message}`);
                    return;
                }
                for (const grant of granted || []) {
                    if (grant.qos === 128) {
                        // an ACL refusal: the account may not read it (docs/mesh.md, Roles)
                        node.warn(`the broker refused the subscription ${grant.topic} for ${node.username}`);
                        for (const handler of subscriptions.get(grant.topic) || []) {
                            if (handler.refused) handler.refused(grant.topic);
                        }
                    }
                }
            });
        }

        function scheduleReconnect() {
            if (closing || retryTimer) return;
            // full jitter: uniform(0, min(cap, base * 2**attempt))
            const delay = Math.random() * Math.min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** attempt);
            attempt += 1;
            retryTimer = setTimeout(() => {
                retryTimer = null;
                if (!closing && client) client.reconnect();
            }, delay * 1000);
        }

        function onMessage(topic, payload) {
            if (topic === node.replyTo) {
                onReply(payload);
                return;
            }
            for (const [filter, handlers] of subscriptions) {
                if (!protocol.matches(filter, topic)) continue;
                for (const handler of handlers) {
                    try {
                        handler.message(topic, payload);
                    } catch (err) {
                        node.error(`handler for ${filter} failed: ${err.message}`);
                    }
                }
            }
        }

        function onReply(payload) {
            const parsed = protocol.parseJson(payload);
            const problem = parsed.error || protocol.checkReply(parsed.value);
            if (problem) {
                node.warn(`ignored a malformed reply on ${node.replyTo}: ${problem}`);
                return;
            }
            const reply = parsed.value;
            const waiting = pending.get(reply.correlation_id);
            if (!waiting) {
                node.log(`a reply for no pending request (${reply.correlation_id}; late or answered)`);
                return;
            }
            // a stream (logs with follow_s) numbers its replies and marks the last one final
            if (reply.final === false) {
                clearTimeout(waiting.timer);
                waiting.timer = setTimeout(() => expire(reply.correlation_id), waiting.timeoutMs);
            } else {
                clearTimeout(waiting.timer);
                pending.delete(reply.correlation_id);
            }
            waiting.onReply(reply);
        }

        function expire(correlationId) {
            const waiting = pending.get(correlationId);
            if (!waiting) return;
            pending.delete(correlationId);
            waiting.onTimeout();
        }

        function connect() {
            if (client) return;
            closing = false;
            const options = {
                clientId: node.clientId,
                username: node.username || undefined,
                password: creds.password || undefined,
                protocolVersion: 4, // the embedded amqtt broker speaks MQTT 3.1.1
                clean: true,
                keepalive: 30,
                connectTimeout: CONNECT_TIMEOUT_MS,
                reconnectPeriod: 0, // reconnects are ours, with jittered back-off
                resubscribe: false, // and so are subscriptions, restored on every connect
            };
            if (node.tls && node.caFile) options.ca = fs.readFileSync(node.caFile);
            const url = `${node.tls ? "mqtts" : "mqtt"}://${node.host}:${node.port}`;
            node.replyTo = protocol.replyTopic(node.tenant, node.clientId);
            client = mqtt.connect(url, options);
            client.on("connect", () => {
                node.connected = true;
                attempt = 0;
                node.log(`connected to ${url} as ${node.clientId}`);
                statusAll({ fill: "green", shape: "dot", text: "connected" });
                subscribe([node.replyTo, ...subscriptions.keys()]);
            });
            client.on("message", onMessage);
            client.on("error", (err) => {
                node.warn(`broker ${url}: ${err.message}`);
            });
            client.on("close", () => {
                if (node.connected) node.log(`disconnected from ${url}`);
                node.connected = false;
                if (!closing) {
                    statusAll({ fill: "red", shape: "ring", text: "disconnected" });
                    scheduleReconnect();
                }
            });
        }

        /** A node starts using this account: the connection opens with the first one. */
        node.register = function (user) {
            users.add(user);
            user.status(
                node.connected
                    ? { fill: "green", shape: "dot", text: "connected" }
                    : { fill: "yellow", shape: "ring", text: "connecting" },
            );
            connect();
        };

        node.deregister = function (user) {
            users.delete(user);
        };

        /** Route messages on `filter` to `handler.message(topic, payload)`. */
        node.subscribe = function (filter, handler) {
            let handlers = subscriptions.get(filter);
            const fresh = !handlers;
            if (fresh) {
                handlers = new Set();
                subscriptions.set(filter, handlers);
            }
            handlers.add(handler);
            if (fresh) subscribe([filter]);
        };

        node.unsubscribe = function (filter, handler) {
            const handlers = subscriptions.get(filter);
            if (!handlers) return;
            handlers.delete(handler);
            if (!handlers.size) {
                subscriptions.delete(filter);
                if (client && node.connected) client.unsubscribe(filter);
            }
        };

        node.publish = function (topic, payload, done) {
            if (!client) connect();
            client.publish(topic, payload, { qos: 1, retain: false }, done);
        };

        /**
         * Send a request and wait for its answers on this client's reply topic.
         * `onReply(reply)` runs for each answer (several for a stream), `onTimeout()` once
         * when none came within `timeoutMs` of the request or of the last answer.
         */
        node.request = function (command, body, timeoutMs, onReply, onTimeout) {
            if (!client) connect();
            const where = protocol.route(command, {
                tenant: node.tenant,
                username: node.username,
                clientId: node.clientId,
            });
            const request = protocol.buildRequest(body, { replyTo: where.replyTo, source: node.clientId });
            const waiting = { onReply, onTimeout, timeoutMs, timer: null };
            waiting.timer = setTimeout(() => expire(request.correlation_id), timeoutMs);
            pending.set(request.correlation_id, waiting);
            client.publish(where.topic, JSON.stringify(request), { qos: 1, retain: false }, (err) => {
                if (err) node.warn(`publish to ${where.topic} failed: ${err.message}`);
            });
            return { topic: where.topic, correlationId: request.correlation_id, request };
        };

        node.on("close", (done) => {
            closing = true;
            clearTimeout(retryTimer);
            retryTimer = null;
            for (const waiting of pending.values()) clearTimeout(waiting.timer);
            pending.clear();
            const old = client;
            client = null;
            node.connected = false;
            if (!old) {
                done();
                return;
            }
            old.end(false, {}, () => done());
        });
    }

    RED.nodes.registerType("fogmesh-broker", FogmeshBrokerNode, {
        credentials: {
            username: { type: "text" },
            password: { type: "password" },
        },
    });
};

module.exports.setting = setting;
