"use strict";
/**
 * The parts of the fogmesh contract the nodes need (docs/topics.md, docs/bus-api.md):
 * topic builders that refuse ids which are not a single topic level, the reply topic rule,
 * request envelopes and MQTT filter matching. Pure functions, no Node-RED.
 */
const crypto = require("crypto");

const ROOT = "fm/v1";
const MAX_ID_LENGTH = 128;
const EVENT_KINDS = [
    "node-joined", "node-lost", "node-stale", "node-back", "desired-rejected",
    "workload-state", "app-deployed", "app-updated", "app-deleted", "placement-failed",
    "workload-replaced", "migration-started", "migration-finished", "migration-failed",
    "site-unreachable", "site-reachable",
];

/** Return `value` if it is a legal topic level (as fogmesh's check_id), else throw. */
function checkId(value, what) {
    what = what || "id";
    if (typeof value !== "string") throw new Error(`${what} must be a string`);
    if (!value) throw new Error(`${what} must not be empty`);
    if (value.length > MAX_ID_LENGTH) throw new Error(`${what} is longer than ${MAX_ID_LENGTH} characters`);
    for (const ch of value) {
        const code = ch.codePointAt(0);
        if ("+#/\u0000".includes(ch)) throw new Error(`${what} must not contain '${ch}'`);
        if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) {
            throw new Error(`${what} must not contain control characters`);
        }
    }
    if (value !== value.trim()) throw new Error(`${what} must not start or end with whitespace`);
    return value;
}

/** `fm/v1/api/{tenant}/{resource}/{action}` */
function apiTopic(tenant, resource, action) {
    return `${ROOT}/api/${checkId(tenant, "tenant")}/${checkId(resource, "resource")}/${checkId(action, "action")}`;
}

/** `fm/v1/nodes/{node}/cmd/{verb}` (operators only) */
function nodeCmdTopic(node, verb) {
    return `${ROOT}/nodes/${checkId(node, "node")}/cmd/${checkId(verb, "verb")}`;
}

/** `fm/v1/reply/{account}/{client}` */
function replyTopic(account, client) {
    return `${ROOT}/reply/${checkId(account, "account")}/${checkId(client, "client id")}`;
}

/** `fm/v1/data/{tenant}/{app}/{stream}`; with `wildcards`, app and stream may be `+`. */
function dataTopic(tenant, app, stream, wildcards) {
    const level = (v, what) => (wildcards && v === "+" ? v : checkId(v, what));
    return `${ROOT}/data/${checkId(tenant, "tenant")}/${level(app, "app")}/${level(stream, "stream")}`;
}

/**
 * The event filters for `scope` (`tenant`, `fleet` or `both`), `tenant` (a tenant, or `+`
 * for every tenant's) and `kinds` (empty: all).
 * One filter per kind, never a kind filter beside `+`: overlapping filters make amqtt deliver
 * a message once per filter.
 */
function eventFilters(scope, tenant, kinds) {
    const levels = kinds && kinds.length ? kinds.map((k) => checkId(k, "event kind")) : ["+"];
    const out = [];
    if (scope === "fleet" || scope === "both") {
        for (const k of levels) out.push(`${ROOT}/events/fleet/${k}`);
    }
    if (scope === "tenant" || scope === "both") {
        // `+`: every tenant's (an operator's view)
        const who = tenant === "+" ? tenant : checkId(tenant, "tenant");
        for (const k of levels) out.push(`${ROOT}/events/tenants/${who}/${k}`);
    }
    if (!out.length) throw new Error(`unknown event scope ${JSON.stringify(scope)}`);
    return out;
}

/**
 * Where a command goes and where its answer comes back.
 * `command` is `resource/action` (a tenant API request, e.g. `apps/deploy`,
 * `workloads/logs`) or `nodes/{node}/cmd/{verb}` (an operator's node command).
 * The reply rule: under `fm/v1/api/{tenant}/` the answer comes on
 * `fm/v1/reply/{tenant}/{client}`, anything else on `fm/v1/reply/{username}/{client}`.
 */
function route(command, { tenant, username, clientId }) {
    if (typeof command !== "string" || !command) throw new Error("no command (e.g. apps/deploy)");
    const parts = command.split("/");
    if (parts.length === 2) {
        return {
            topic: apiTopic(tenant, parts[0], parts[1]),
            replyTo: replyTopic(tenant, clientId),
        };
    }
    if (parts.length === 4 && parts[0] === "nodes" && parts[2] === "cmd") {
        return { topic: nodeCmdTopic(parts[1], parts[3]), replyTo: replyTopic(username, clientId) };
    }
    throw new Error(`command ${JSON.stringify(command)} is neither resource/action nor nodes/{node}/cmd/{verb}`);
}

/** A fresh id (32 hex characters), as fogmesh's new_id. */
function newId() {
    return crypto.randomBytes(16).toString("hex");
}

/**
 * The request to publish: the caller's body with the envelope's request fields set.
 * The body must be an object; fogmesh refuses unknown fields, so nothing else is added.
 */
function buildRequest(body, { replyTo, source, correlationId }) {
    if (body === undefined || body === null || body === "") body = {};
    if (typeof body !== "object" || Array.isArray(body) || Buffer.isBuffer(body)) {
        throw new Error("msg.payload must be an object: the command's fields");
    }
    const request = { ...body };
    request.correlation_id = correlationId || newId();
    request.reply_to = replyTo;
    if (source && !request.source) request.source = source;
    return request;
}

/** Does the MQTT `filter` match `topic`? (`+` one level, `#` the rest) */
function matches(filter, topic) {
    const f = filter.split("/");
    const t = topic.split("/");
    for (let i = 0; i < f.length; i++) {
        if (f[i] === "#") return true;
        if (i >= t.length) return false;
        if (f[i] !== "+" && f[i] !== t[i]) return false;
    }
    return f.length === t.length;
}

/** Parse a JSON payload; returns `{value}` or `{error}`. */
function parseJson(payload) {
    try {
        return { value: JSON.parse(Buffer.isBuffer(payload) ? payload.toString("utf8") : payload) };
    } catch (err) {
        return { error: err.message };
    }
}

/** Is `value` an event as fogmesh publishes it (an object with a known-shaped kind)? */
function checkEvent(value) {
    if (!value || typeof value !== "object" || Array.isArray(value)) return "not an object";
    if (typeof value.kind !== "string" || !value.kind) return "no kind";
    return null;
}

/** Is `value` a reply (an object with a correlation id and `ok`)? */
function checkReply(value) {
    if (!value || typeof value !== "object" || Array.isArray(value)) return "not an object";
    if (typeof value.correlation_id !== "string" || !value.correlation_id) return "no correlation_id";
    if (typeof value.ok !== "boolean") return "no ok";
    return null;
}

module.exports = {
    ROOT,
    EVENT_KINDS,
    checkId,
    apiTopic,
    nodeCmdTopic,
    replyTopic,
    dataTopic,
    eventFilters,
    route,
    newId,
    buildRequest,
    matches,
    parseJson,
    checkEvent,
    checkReply,
};
