// The page's bus: one MQTT 3.1.1 connection over WebSocket (subprotocol "mqtt", the only one
// amqtt's listener takes), requests and replies in the JSON envelope exactly as every other
// fogmesh client sends them (docs/bus-api.md), and subscriptions with the broker's verdict.
(() => {
"use strict";

const ROOT = "fm/v1";
const SUBACK_REFUSED = 128;

class RequestFailed extends Error {
  // code: the reply's error code (or "timeout" / "unreachable"); fields: [{loc, msg}]
  constructor(code, message, fields = [], details = {}) {
    super(message);
    this.code = code;
    this.fields = fields;
    this.details = details;
  }
}

function newId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function topicMatches(filter, topic) {
  const f = filter.split("/");
  const t = topic.split("/");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true;
    if (i >= t.length || (f[i] !== "+" && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

class Bus {
  constructor() {
    this.client = null;
    this.clientId = "";
    this.pending = new Map(); // correlation_id -> {resolve, reject, timer, onReply}
    this.handlers = []; // [filter, fn(topic, json)]
    this.onStatus = () => {};
  }

  // Resolves once the broker accepted the login; rejects with a sentence a person can act on.
  connect(url, username, password, timeoutMs = 8000) {
    // The broker admits a client id only of the account's own: "{username}-..."
    this.clientId = `${username}-dash-${newId().slice(0, 12)}`;
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (code, message) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        client.end(true);
        reject(new RequestFailed(code, message));
      };
      const client = mqtt.connect(url, {
        protocolVersion: 4, // MQTT 3.1.1: amqtt speaks nothing newer
        protocolId: "MQTT",
        clientId: this.clientId,
        username,
        password,
        clean: true,
        keepalive: 30,
        connectTimeout: timeoutMs,
        reconnectPeriod: 0, // until the first CONNACK: a wrong password must not loop
        resubscribe: true,
      });
      this.client = client;
      const timer = setTimeout(
        () => fail("unreachable", `the broker at ${url} did not answer within ${timeoutMs / 1000} s`),
        timeoutMs,
      );
      client.on("connect", () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        // from now on a lost connection is retried, with jitter so many pages do not stampede
        client.options.reconnectPeriod = 2000 + Math.floor(Math.random() * 2000);
        this.onStatus("connected");
        resolve();
      });
      client.on("error", (err) => {
        const text = String((err && err.message) || err);
        if (/bad user name or password|not authorized|bad username/i.test(text) || err.code === 4 || err.code === 5) {
          fail("refused", `the broker refused the login: wrong username or password (${text})`);
        } else {
          fail("unreachable", `cannot reach the broker at ${url}: ${text}`);
        }
      });
      client.on("close", () => {
        if (!settled) fail("unreachable", `cannot reach the broker at ${url}: the connection closed`);
        else this.onStatus("disconnected");
      });
      client.on("reconnect", () => this.onStatus("reconnecting"));
      client.on("message", (topic, payload) => this._dispatch(topic, payload));
    });
  }

  end() {
    if (this.client) this.client.end(true);
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
    this.handlers = [];
  }

  replyTopic(tenant) {
    return `${ROOT}/reply/${tenant}/${this.clientId}`;
  }

  // true when the broker granted the filter, false when its ACL refused it
  subscribe(filter, fn) {
    return new Promise((resolve) => {
      this.client.subscribe(filter, { qos: 1 }, (err, granted) => {
        const ok = !err && granted && granted.length > 0 && granted[0].qos !== SUBACK_REFUSED;
        if (ok && fn) this.handlers.push([filter, fn]);
        resolve(ok);
      });
    });
  }

  unsubscribe(filter) {
    this.handlers = this.handlers.filter(([f]) => f !== filter);
    this.client.unsubscribe(filter);
  }

  // One request on fm/v1/api/{tenant}/{resource}/{action}; the reply's model, or a
  // RequestFailed with its code, message and failing fields. onReply: a stream (logs follow).
  request(tenant, resource, action, body = {}, { timeoutMs = 15000, replyTo, onReply } = {}) {
    return this.requestOn(`${ROOT}/api/${tenant}/${resource}/${action}`, { ...body, tenant }, {
      timeoutMs,
      replyTo: replyTo || this.replyTopic(tenant),
      onReply,
      what: `${resource}/${action}`,
    });
  }

  // One request on any topic the account may publish on (an operator's fm/v1/ops/...).
  requestOn(topic, body, { timeoutMs = 15000, replyTo, onReply, what = topic } = {}) {
    const correlation_id = newId();
    const message = {
      ...body,
      id: newId(),
      ts: Date.now() / 1000,
      source: this.clientId,
      correlation_id,
      reply_to: replyTo,
    };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(correlation_id);
        reject(new RequestFailed("timeout", `no answer to ${what} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.pending.set(correlation_id, { resolve, reject, timer, onReply });
      this.client.publish(topic, JSON.stringify(message), { qos: 1 }, (err) => {
        if (err) {
          clearTimeout(timer);
          this.pending.delete(correlation_id);
          reject(new RequestFailed("unreachable", `could not send ${what}: ${err.message}`));
        }
      });
    });
  }

  _dispatch(topic, payload) {
    let data;
    try {
      data = JSON.parse(new TextDecoder().decode(payload));
    } catch (_err) {
      data = null; // not JSON: data handlers still get the topic
    }
    if (data && topic.startsWith(`${ROOT}/reply/`) && typeof data.correlation_id === "string") {
      const waiting = this.pending.get(data.correlation_id);
      if (waiting) {
        if (data.ok === false) {
          clearTimeout(waiting.timer);
          this.pending.delete(data.correlation_id);
          const e = data.error || {};
          waiting.reject(new RequestFailed(e.code || "error", e.message || "refused", e.fields || [], e.details || {}));
        } else if (waiting.onReply) {
          if (waiting.onReply(data)) {
            clearTimeout(waiting.timer);
            this.pending.delete(data.correlation_id);
            waiting.resolve(data);
          }
        } else {
          clearTimeout(waiting.timer);
          this.pending.delete(data.correlation_id);
          waiting.resolve(data);
        }
      }
    }
    for (const [filter, fn] of this.handlers) {
      if (topicMatches(filter, topic)) {
        try {
          fn(topic, data);
        } catch (err) {
          console.error("handler of", filter, err); // a bad message never stops the page
        }
      }
    }
  }
}

window.fogmesh = { Bus, RequestFailed, ROOT, topicMatches, newId };
})();
