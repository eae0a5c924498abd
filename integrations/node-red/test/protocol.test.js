"use strict";
const test = require("node:test");
const assert = require("node:assert");
const protocol = require("../nodes/lib/protocol");

test("api commands go under the tenant and are answered on the tenant's reply topic", () => {
    const where = protocol.route("apps/deploy", { tenant: "acme", username: "acme-ops", clientId: "acme-nr" });
    assert.deepStrictEqual(where, {
        topic: "fm/v1/api/acme/apps/deploy",
        replyTo: "fm/v1/reply/acme/acme-nr",
    });
});

test("node commands are answered on the username's reply topic", () => {
    const where = protocol.route("nodes/edge-1/cmd/logs", { tenant: "acme", username: "operator", clientId: "op-1" });
    assert.deepStrictEqual(where, {
        topic: "fm/v1/nodes/edge-1/cmd/logs",
        replyTo: "fm/v1/reply/operator/op-1",
    });
});

test("commands and ids that are not topic levels are refused", () => {
    const who = { tenant: "acme", username: "acme", clientId: "acme-1" };
    assert.throws(() => protocol.route("deploy", who), /neither/);
    assert.throws(() => protocol.route("apps/#", who), /must not contain '#'/);
    assert.throws(() => protocol.route("apps/deploy", { ...who, tenant: "a/b" }), /tenant/);
    assert.throws(() => protocol.dataTopic("acme", "app", "+", false), /stream/);
    assert.strictEqual(protocol.dataTopic("acme", "+", "+", true), "fm/v1/data/acme/+/+");
});

test("a request carries the envelope's request fields and nothing else", () => {
    const req = protocol.buildRequest({ app: "x" }, { replyTo: "fm/v1/reply/acme/acme-1", source: "acme-1" });
    assert.match(req.correlation_id, /^[0-9a-f]{32}$/);
    assert.deepStrictEqual(Object.keys(req).sort(), ["app", "correlation_id", "reply_to", "source"]);
    assert.throws(() => protocol.buildRequest("text", { replyTo: "x" }), /object/);
    assert.throws(() => protocol.buildRequest([1], { replyTo: "x" }), /object/);
});

test("event filters: one per kind, never beside a wildcard", () => {
    assert.deepStrictEqual(protocol.eventFilters("tenant", "acme", []), ["fm/v1/events/tenants/acme/+"]);
    assert.deepStrictEqual(protocol.eventFilters("both", "acme", ["node-lost"]), [
        "fm/v1/events/fleet/node-lost",
        "fm/v1/events/tenants/acme/node-lost",
    ]);
    assert.deepStrictEqual(protocol.eventFilters("tenant", "+", ["workload-replaced"]), [
        "fm/v1/events/tenants/+/workload-replaced",
    ]);
    assert.throws(() => protocol.eventFilters("tenant", "#", []), /tenant/);
    assert.throws(() => protocol.eventFilters("nowhere", "acme", []), /scope/);
});

test("filter matching follows MQTT", () => {
    assert.ok(protocol.matches("fm/v1/data/acme/+/out", "fm/v1/data/acme/app/out"));
    assert.ok(protocol.matches("fm/v1/#", "fm/v1/data/acme/app/out"));
    assert.ok(!protocol.matches("fm/v1/data/acme/+", "fm/v1/data/acme/app/out"));
    assert.ok(!protocol.matches("fm/v1/data/acme/app/out", "fm/v1/data/acme/app"));
});

test("an unset ${VAR} left in a property counts as unset", () => {
    const { setting } = require("../nodes/fogmesh-broker.js");
    assert.strictEqual(setting("${FOGMESH_PORT}"), "");
    assert.strictEqual(setting(" 1884 "), "1884");
    assert.strictEqual(setting(undefined), "");
});
