"use strict";
/** A real Mosquitto for the unit tests, on a free port of 127.0.0.1, and MQTT helpers. */
const { spawn } = require("child_process");
const fs = require("fs");
const net = require("net");
const os = require("os");
const path = require("path");
const mqtt = require("mqtt");

function freePort() {
    return new Promise((resolve, reject) => {
        const server = net.createServer();
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => {
            const { port } = server.address();
            server.close(() => resolve(port));
        });
    });
}

async function waitPort(port, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const ok = await new Promise((resolve) => {
            const sock = net.connect(port, "127.0.0.1");
            sock.once("connect", () => { sock.destroy(); resolve(true); });
            sock.once("error", () => resolve(false));
        });
        if (ok) return;
        if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`);
        await new Promise((r) => setTimeout(r, 50));
    }
}

/** Start mosquitto (on `port`, or a free one); resolves to {port, stop()}. */
async function startMosquitto(port) {
    port = port || (await freePort());
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fm-nr-mosq-"));
    fs.chmodSync(dir, 0o755);
    const conf = path.join(dir, "mosquitto.conf");
    fs.writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\n`);
    const exe = fs.existsSync("/usr/sbin/mosquitto") ? "/usr/sbin/mosquitto" : "mosquitto";
    const proc = spawn(exe, ["-c", conf], { stdio: "ignore" });
    await waitPort(port, 15000);
    return {
        port,
        stop() {
            const ended = new Promise((resolve) => proc.once("exit", resolve));
            proc.kill("SIGTERM");
            fs.rmSync(dir, { recursive: true, force: true });
            return ended;
        },
    };
}

/** A plain MQTT client of the test (plays the fogmesh service or an app). */
function connect(port, clientId) {
    return new Promise((resolve, reject) => {
        const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId, protocolVersion: 4 });
        client.once("connect", () => resolve(client));
        client.once("error", reject);
    });
}

/** Poll `check` until it returns true, for at most `timeoutMs` (no timed assertions). */
async function until(check, timeoutMs, what) {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 25));
    }
}

module.exports = { startMosquitto, connect, until };
