"use strict";
/**
 * The nodes in a real Node-RED runtime (node-red-node-test-helper) against a real Mosquitto.
 * The fogmesh service at the other end is a plain MQTT client of the test answering as the
 * scheduler would (the real services are driven by tests/nodered/ in the Python suite).
 */
const test = require("node:test");
const assert = require("node:assert");
const helper = require("node-red-node-test-helper");
const brokerNode = require("../nodes/fogmesh-broker.js");
const requestNode = require("../nodes/fogmesh-request.js");
const eventsNode = require("../nodes/fogmesh-events.js");
const dataNode = require("../nodes/fogmesh-data.js");
const { startMosquitto, connect, until } = require("./broker");

helper.init(require.resolve("node-red"));
const NODES = [brokerNode, requestNode, eventsNode, dataNode];
let mosquitto;

test.before(async () => {
    mosquitto = await startMosquitto();
    await new Promise((resolve) => helper.startServer(resolve));
});

test.after(async () => {
    await new Promise((resolve) => helper.stopServer(resolve));
    await mosquitto.stop();
});

test.afterEach(async () => {
    await helper.unload();
});

function account(extra) {
    return {
        id: "b1",
        type: "fogmesh-broker",
        host: "127.0.0.1",
        port: mosquitto.port,
        tenant: "acme",
        clientId: "acme-nr-test",
        ...extra,
    };
}

const CREDS = { b1: { username: "acme", password: "unused" } };

function load(flow) {
    return new Promise((resolve) => helper.load(NODES, flow, CREDS, resolve));
}

function collector(id) {
    const seen = [];
    helper.getNode(id).on("input", (msg) => seen.push(msg));
    return seen;
}

async function connected() {
    await until(() => helper.getNode("b1").connected, 15000, "the config node's connection");
}

test("the account's credentials are credentials, not properties", async () => {
    await load([account()]);
    const b1 = helper.getNode("b1");
    assert.strictEqual(b1.username, "acme");
    assert.strictEqual(b1.credentials.password, "unused");
    assert.strictEqual(b1.replyTo, null); // no node uses it yet: no connection
});

test("request: correlation id, reply_to, ok and error answers, timeout", async () => {
    await load([
        account(),
        { id: "r1", type: "fogmesh-request", broker: "b1", command: "apps/deploy", timeout: 1, wires: [["ok"], ["bad"]] },
        { id: "ok", type: "helper" },
        { id: "bad", type: "helper" },
    ]);
    const ok = collector("ok");
    const bad = collector("bad");
    await connected();
    const requests = [];
    const scheduler = await connect(mosquitto.port, "scheduler-test");
    await scheduler.subscribeAsync("fm/v1/api/+/apps/+", { qos: 1 });
    scheduler.on("message", (topic, payload) => {
        const req = JSON.parse(payload.toString());
        requests.push({ topic, req });
        if (req.manifest && req.manifest.name === "silent") return; // never answered
        const answer = req.manifest.name === "good"
            ? { correlation_id: req.correlation_id, ok: true, app: { name: "good" } }
            : { correlation_id: req.correlation_id, ok: false, error: { code: "invalid_payload", message: "no" } };
        scheduler.publish(req.reply_to, JSON.stringify(answer), { qos: 1 });
        // a second copy (a redelivery) and a stranger's id are ignored
        scheduler.publish(req.reply_to, JSON.stringify(answer), { qos: 1 });
        scheduler.publish(req.reply_to, JSON.stringify({ ...answer, correlation_id: "other" }), { qos: 1 });
        scheduler.publish(req.reply_to, "not json", { qos: 1 });
    });
    try {
        const r1 = helper.getNode("r1");
        r1.receive({ payload: { manifest: { name: "good" } } });
        await until(() => ok.length === 1, 15000, "the ok answer");
        r1.receive({ payload: { manifest: { name: "wrong" } } });
        await until(() => bad.length === 1, 15000, "the error answer");
        r1.receive({ payload: { manifest: { name: "silent" } } });
        await until(() => bad.length === 2, 15000, "the timeout");
        assert.strictEqual(requests[0].topic, "fm/v1/api/acme/apps/deploy");
        assert.strictEqual(requests[0].req.reply_to, "fm/v1/reply/acme/acme-nr-test");
        assert.strictEqual(ok[0].payload.correlation_id, requests[0].req.correlation_id);
        assert.strictEqual(ok[0].payload.app.name, "good");
        assert.strictEqual(bad[0].payload.error.code, "invalid_payload");
        assert.strictEqual(bad[1].payload.error.code, "timeout");
        assert.strictEqual(bad[1].correlation_id, requests[2].req.correlation_id);
        assert.strictEqual(ok.length, 1); // the duplicate went nowhere
    } finally {
        await scheduler.endAsync();
    }
});

test("request: a stream of replies (logs with follow_s) is emitted whole; bad input is an error", async () => {
    await load([
        account(),
        { id: "r1", type: "fogmesh-request", broker: "b1", command: "workloads/logs", timeout: 5, wires: [["ok"], []] },
        { id: "ok", type: "helper" },
    ]);
    const ok = collector("ok");
    await connected();
    const registry = await connect(mosquitto.port, "registry-test");
    await registry.subscribeAsync("fm/v1/api/acme/workloads/logs", { qos: 1 });
    registry.on("message", (topic, payload) => {
        const req = JSON.parse(payload.toString());
        for (const [seq, final] of [[0, false], [1, false], [2, true]]) {
            const reply = { correlation_id: req.correlation_id, ok: true, workload: req.workload, lines: [`l${seq}`], seq, final };
            registry.publish(req.reply_to, JSON.stringify(reply), { qos: 1 });
        }
    });
    try {
        const r1 = helper.getNode("r1");
        r1.receive({ payload: { workload: "w-0", follow_s: 2 } });
        await until(() => ok.length === 3, 15000, "three replies");
        assert.deepStrictEqual(ok.map((m) => m.payload.seq).sort(), [0, 1, 2]);
        const errors = [];
        r1.on("call:error", (call) => errors.push(call.args[0]));
        r1.receive({ payload: "not an object" });
        r1.receive({ payload: {}, command: "nowhere" });
        await until(() => errors.length === 2, 15000, "two errors");
    } finally {
        await registry.endAsync();
    }
});

test("events: only the kinds asked for; a malformed event is logged and dropped", async () => {
    await load([
        account(),
        { id: "e1", type: "fogmesh-events", broker: "b1", scope: "tenant", kinds: "app-deployed, workload-replaced", wires: [["out"]] },
        { id: "out", type: "helper" },
    ]);
    const out = collector("out");
    await connected();
    const e1 = helper.getNode("e1");
    const warned = [];
    e1.on("call:warn", (call) => warned.push(call.args[0]));
    const agent = await connect(mosquitto.port, "agent-test");
    try {
        // the subscription is made after the connection: publish until the first one arrives
        await until(() => {
            agent.publish("fm/v1/events/tenants/acme/app-deployed", JSON.stringify({ kind: "app-deployed", app: "a" }), { qos: 1 });
            return out.length > 0;
        }, 15000, "an app-deployed event");
        agent.publish("fm/v1/events/tenants/acme/workload-state", JSON.stringify({ kind: "workload-state" }), { qos: 1 });
        agent.publish("fm/v1/events/tenants/other/workload-replaced", JSON.stringify({ kind: "workload-replaced" }), { qos: 1 });
        agent.publish("fm/v1/events/tenants/acme/workload-replaced", "{not json", { qos: 1 });
        agent.publish("fm/v1/events/tenants/acme/workload-replaced", JSON.stringify({ kind: "workload-replaced", workload: "w" }), { qos: 1 });
        await until(() => out.some((m) => m.kind === "workload-replaced"), 15000, "workload-replaced");
        assert.ok(out.every((m) => ["app-deployed", "workload-replaced"].includes(m.kind)));
        assert.ok(out.every((m) => m.topic.startsWith("fm/v1/events/tenants/acme/")));
        assert.strictEqual(out.find((m) => m.kind === "workload-replaced").payload.workload, "w");
        await until(() => warned.some((w) => /malformed event/.test(w)), 15000, "the warning");
    } finally {
        await agent.endAsync();
    }
});

test("data: out writes an app's input stream, in reads its output", async () => {
    await load([
        account(),
        { id: "w", type: "fogmesh-data-out", broker: "b1", app: "calc", stream: "in", wires: [] },
        { id: "r", type: "fogmesh-data-in", broker: "b1", app: "calc", stream: "out", format: "json", wires: [["got"]] },
        { id: "got", type: "helper" },
    ]);
    const got = collector("got");
    await connected();
    const app = await connect(mosquitto.port, "acme-calc-test");
    await app.subscribeAsync("fm/v1/data/acme/calc/in", { qos: 1 });
    app.on("message", (topic, payload) => {
        const reading = JSON.parse(payload.toString());
        app.publish("fm/v1/data/acme/calc/out", JSON.stringify({ seq: reading.seq, double: reading.value * 2 }), { qos: 1 });
        app.publish("fm/v1/data/acme/calc/out", "garbage", { qos: 1 });
    });
    try {
        const w = helper.getNode("w");
        let seq = 0;
        await until(() => {
            w.receive({ payload: { seq: seq++, value: 21 } });
            return got.length > 0;
        }, 15000, "a result");
        assert.strictEqual(got[0].payload.double, 42);
        assert.strictEqual(got[0].app, "calc");
        assert.strictEqual(got[0].stream, "out");
        assert.ok(got.every((m) => typeof m.payload === "object")); // garbage was dropped
    } finally {
        await app.endAsync();
    }
});

test("a broker restart: the account reconnects and restores its subscriptions", async () => {
    const own = await startMosquitto();
    let restarted;
    await load([
        account({ port: own.port }),
        { id: "r", type: "fogmesh-data-in", broker: "b1", app: "calc", stream: "out", wires: [["got"]] },
        { id: "got", type: "helper" },
    ]);
    const got = collector("got");
    const b1 = helper.getNode("b1");
    try {
        await connected();
        await own.stop();
        await until(() => !b1.connected, 15000, "the disconnection");
        restarted = await startMosquitto(own.port);
        await until(() => b1.connected, 30000, "the reconnection");
        const app = await connect(own.port, "acme-calc-test");
        try {
            await until(() => {
                app.publish("fm/v1/data/acme/calc/out", JSON.stringify({ seq: 1 }), { qos: 1 });
                return got.length > 0;
            }, 15000, "a message after the restart");
        } finally {
            await app.endAsync();
        }
    } finally {
        if (restarted) await restarted.stop();
    }
});
