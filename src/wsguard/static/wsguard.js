// wsguard.js: the browser client of the wsguard wire protocol, version 1.
//
// One ES module, no dependencies, no build step. Every wsguard server serves it at
// GET /wsguard.js (TypeScript declarations at GET /wsguard.d.ts):
//
//   import { WsguardClient, text } from "/wsguard.js";
//
// It keeps one WebSocket open: it fetches a fresh credential before every connect, reconnects
// with exponential backoff and full jitter after a drop the close code allows, resubscribes each
// channel from the last position it processed so that nothing is lost or delivered twice, and
// refreshes the credential when the server says it is expiring. Reference: the server's
// docs/reference/wire-protocol.md and docs/howto/browser-client.md.
//
// It never turns data into markup: the `text` helper sets textContent, and nothing here parses
// HTML or evaluates strings as code.

const PROTOCOL = 1;

/** @typedef {"connecting" | "open" | "reconnecting" | "closed"} State */

/**
 * A refused or failed request, or a failure of the client itself.
 *
 * `code` is the server's reply code (400 … 503, mirroring HTTP) and `reason` its stable
 * machine-readable reason: branch on `reason`. Failures that never reached a server reply have
 * `code` 0 and one of these reasons: `"timeout"` (no reply within the request's timeout),
 * `"disconnected"` (the socket dropped before the reply), `"closed"` (the client is closed),
 * `"already_subscribed"`, `"credential"` (the ticket or token provider failed), `"bad_frame"`
 * (the server sent something that is not a protocol message).
 */
export class WsguardError extends Error {
  /**
   * @param {number} code the server's reply code, or 0 for a failure on this side
   * @param {string} reason stable machine-readable reason
   * @param {string} [message] for humans; may change between releases
   */
  constructor(code, reason, message) {
    super(message || reason);
    this.name = "WsguardError";
    /** @type {number} */
    this.code = code;
    /** @type {string} */
    this.reason = reason;
  }
}

/**
 * Show `value` as text in `element` (sets `textContent`, never markup) and return the element.
 * Strings are shown as they are, `null` and `undefined` as nothing, other values as JSON.
 *
 * @template {Node} T
 * @param {T} element
 * @param {unknown} value
 * @returns {T}
 */
export function text(element, value) {
  let shown;
  if (value === null || value === undefined) shown = "";
  else if (typeof value === "string") shown = value;
  else if (typeof value === "object") shown = JSON.stringify(value);
  else shown = String(value);
  element.textContent = shown;
  return element;
}

// Close codes after which the client stops instead of reconnecting (docs/reference/codes.md):
// the client or its credential must change first.
function isTerminal(code) {
  return code === 1002 || code === 1007 || code === 1008 || code === 1009
    || (code >= 4400 && code <= 4499);
}

// An exception thrown by application code (an event handler, onMessage) is reported like an
// uncaught error, without breaking the client's own processing.
function report(error) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(error);
  else setTimeout(() => { throw error; }, 0);
}

function positiveSeconds(value, fallback, name) {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !(value > 0)) {
    throw new TypeError(`${name} must be a number of seconds > 0`);
  }
  return value;
}

/**
 * A channel subscription. `epoch` and `offset` are the position of the last publication
 * processed (`null`/0 until the server confirms the subscription).
 */
class Subscription {
  constructor(client, channel, onMessage, options) {
    /** @type {string} */
    this.channel = channel;
    /** Called with `{channel, epoch, offset}` when a recovery reports a gap. */
    this.onGap = options.onGap || null;
    this._client = client;
    this._onMessage = onMessage;
    this._epoch = options.since ? options.since.epoch : null;
    this._offset = options.since ? options.since.offset : 0;
    this._confirmed = false;
    this._active = true;
  }

  /** @type {string | null} */
  get epoch() {
    return this._epoch;
  }

  /** @type {number} */
  get offset() {
    return this._offset;
  }

  /** Whether the subscription is still in force (not unsubscribed, not dropped). */
  get active() {
    return this._active;
  }

  /**
   * Stop the subscription: no `onMessage` call follows. Resolves once the server confirmed
   * (at once when the client is not connected).
   * @returns {Promise<void>}
   */
  unsubscribe() {
    return this._client._unsubscribe(this);
  }

  _since() {
    return this._epoch === null ? undefined : { epoch: this._epoch, offset: this._offset };
  }

  // A `message` push: delivered unless this position was already processed.
  _deliver(push) {
    if (push.epoch === this._epoch && push.offset <= this._offset) return;
    this._epoch = push.epoch;
    this._offset = push.offset;
    try {
      this._onMessage(push.data, { channel: this.channel, epoch: push.epoch, offset: push.offset });
    } catch (error) {
      report(error);
    }
  }
}

/**
 * A wsguard connection that survives drops.
 *
 * ```js
 * const client = new WsguardClient("wss://ws.example.com/ws", {
 *   ticket: async () => (await (await fetch("/ws-ticket", { method: "POST" })).json()).ticket,
 * });
 * await client.connect();
 * await client.subscribe("chat:lobby", (data) => show(data));
 * ```
 */
export class WsguardClient {
  /**
   * @param {string | URL} url the server's WebSocket URL (`wss://host/ws`)
   * @param {object} [options]
   * @param {() => Promise<string>} [options.ticket] fetches a fresh single-use ticket; called
   *   before every connect and reconnect, and on `expiring`; sent as `?ticket=`
   * @param {() => Promise<string>} [options.token] fetches a JWT; sent in the first message
   *   (`{"op": "auth", "token": …}`), never in the URL; called again on `expiring`
   * @param {{base?: number, cap?: number}} [options.backoff] reconnect delays in seconds:
   *   a random delay up to min(cap, base × 2^attempt); defaults base 0.5, cap 30
   * @param {number} [options.timeout] seconds a request (and a connect) waits for its reply;
   *   default 10
   * @param {number} [options.maxRetries] reconnect attempts without a welcome before the client
   *   gives up and closes; default Infinity
   */
  constructor(url, options = {}) {
    if (options.ticket && options.token) {
      throw new TypeError("give a ticket provider or a token provider, not both");
    }
    for (const name of ["ticket", "token"]) {
      if (options[name] !== undefined && typeof options[name] !== "function") {
        throw new TypeError(`${name} must be a function returning a Promise of a string`);
      }
    }
    const backoff = options.backoff || {};
    this._url = String(url);
    this._ticket = options.ticket || null;
    this._token = options.token || null;
    this._base = positiveSeconds(backoff.base, 0.5, "backoff.base");
    this._cap = positiveSeconds(backoff.cap, 30, "backoff.cap");
    this._timeout = positiveSeconds(options.timeout, 10, "timeout");
    const maxRetries = options.maxRetries === undefined ? Infinity : options.maxRetries;
    if (typeof maxRetries !== "number" || !(maxRetries >= 0)) {
      throw new TypeError("maxRetries must be a number >= 0");
    }
    this._maxRetries = maxRetries;

    /** @type {State} */
    this._state = "closed";
    this._handlers = new Map(); // event name -> Set of handlers
    this._subs = new Map(); // channel -> Subscription
    this._pending = new Map(); // id of a sent request -> {resolve, reject, timer}
    this._queue = []; // requests waiting for the welcome: {frame, entry}
    this._nextId = 1;
    this._ws = null;
    this._welcomed = false;
    this._welcome = null;
    this._attempt = 0; // reconnects since the last welcome
    this._generation = 0; // bumped by close() and each attempt: stale callbacks check it
    this._retryTimer = null;
    this._welcomeTimer = null;
    this._refreshing = false;
    this._connected = null; // {promise, resolve, reject} of connect() until the first welcome
  }

  /** The connection state. @type {State} */
  get state() {
    return this._state;
  }

  /** The last `welcome` push, `null` before the first. */
  get welcome() {
    return this._welcome;
  }

  /**
   * Listen to an event; returns a function that removes the listener.
   *
   * Events: `state` (the new state), `welcome` (the push), `closed` (`{code, reason,
   * reconnect}`), `error` (a WsguardError), `recovered` (`{channel, complete, epoch, offset}`),
   * `expiring` (`{in}`, seconds), `unsubscribed` (`{channel, reason}`: the server dropped a
   * subscription).
   *
   * @param {string} event
   * @param {(value: any) => void} handler
   * @returns {() => void}
   */
  on(event, handler) {
    let handlers = this._handlers.get(event);
    if (handlers === undefined) {
      handlers = new Set();
      this._handlers.set(event, handlers);
    }
    // A wrapper, so that the same function can be added twice and removed once per call.
    const entry = (value) => handler(value);
    handlers.add(entry);
    return () => {
      handlers.delete(entry);
    };
  }

  _emit(event, value) {
    const handlers = this._handlers.get(event);
    if (handlers === undefined) return;
    for (const handler of [...handlers]) {
      try {
        handler(value);
      } catch (error) {
        report(error);
      }
    }
  }

  _setState(state) {
    if (this._state === state) return;
    this._state = state;
    this._emit("state", state);
  }

  // ------------------------------------------------------------------ connecting

  /**
   * Open the connection. Resolves with the `welcome` push once the server has accepted it
   * (at once when already open); rejects with a WsguardError when the client closes before
   * that (a terminal close code, `close()`, `maxRetries` reached).
   * @returns {Promise<object>}
   */
  connect() {
    if (this._state === "open") return Promise.resolve(this._welcome);
    if (this._connected === null) {
      let resolve;
      let reject;
      const promise = new Promise((res, rej) => {
        resolve = res;
        reject = rej;
      });
      // Rejections the application does not await are not "unhandled": the `closed` and
      // `error` events report them too.
      promise.catch(() => {});
      this._connected = { promise, resolve, reject };
    }
    if (this._state === "closed") {
      this._attempt = 0;
      this._setState("connecting");
      this._open();
    }
    return this._connected.promise;
  }

  /**
   * Close the connection for good (close code 1000) and stop reconnecting. Requests waiting
   * for a reply reject with reason `"closed"`. Subscriptions are kept: a later `connect()`
   * resubscribes them from their positions.
   */
  close() {
    if (this._state === "closed") return;
    const ws = this._ws;
    this._detach("closed");
    if (ws !== null) ws.close(1000);
    this._stop(1000, "", "closed");
  }

  async _open() {
    const generation = ++this._generation;
    let url = this._url;
    let token = null;
    try {
      if (this._ticket !== null) {
        const ticket = await this._credential(this._ticket);
        const separator = url.includes("?") ? "&" : "?";
        url = `${url}${separator}ticket=${encodeURIComponent(ticket)}`;
      } else if (this._token !== null) {
        token = await this._credential(this._token);
      }
    } catch (error) {
      if (generation !== this._generation) return;
      this._emit("error", error);
      this._dropped(1006, "no credential");
      return;
    }
    if (generation !== this._generation) return;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (error) {
      // A malformed URL: no attempt can ever succeed.
      this._emit("error", new WsguardError(0, "bad_url", String(error && error.message || error)));
      this._stop(1006, "bad url", "closed");
      return;
    }
    this._ws = ws;
    this._welcomed = false;
    // A handshake or a welcome that never comes counts as a drop.
    this._welcomeTimer = setTimeout(() => {
      if (this._ws !== ws) return;
      this._detach();
      ws.close();
      this._dropped(1006, "no welcome");
    }, this._timeout * 1000);
    ws.onopen = () => {
      if (this._ws !== ws || token === null) return;
      // First-message authentication; the welcome follows a successful reply, and a refused
      // token closes the socket with 4401.
      this._call({ op: "auth", token }, { direct: true }).catch((error) => {
        if (error.code !== 0) this._emit("error", error);
      });
    };
    ws.onmessage = (event) => {
      if (this._ws === ws) this._receive(event.data);
    };
    ws.onclose = (event) => {
      if (this._ws !== ws) return;
      this._detach();
      this._dropped(event.code, event.reason);
    };
  }

  // Forget the current socket: its events no longer reach the client, and the requests that
  // wait for its replies reject with `why`.
  _detach(why = "disconnected") {
    const ws = this._ws;
    if (ws !== null) {
      ws.onopen = null;
      ws.onmessage = null;
      ws.onclose = null;
      this._ws = null;
    }
    this._welcomed = false;
    clearTimeout(this._welcomeTimer);
    this._welcomeTimer = null;
    this._refreshing = false;
    for (const entry of this._pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(new WsguardError(0, why, "the connection dropped"));
    }
    this._pending.clear();
  }

  // The socket is gone (or never opened): reconnect, or stop when the code says so.
  _dropped(code, reason) {
    if (isTerminal(code)) {
      this._stop(code, reason, "closed");
      return;
    }
    if (this._attempt >= this._maxRetries) {
      this._stop(code, reason, "closed");
      return;
    }
    this._emit("closed", { code, reason, reconnect: true });
    this._setState("reconnecting");
    // Full jitter (a random delay up to the exponential bound) spreads the reconnects of
    // every client of a restarted server instead of bringing them back in one wave.
    const bound = Math.min(this._cap, this._base * 2 ** this._attempt);
    this._attempt += 1;
    const generation = ++this._generation;
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      if (generation === this._generation) this._open();
    }, Math.random() * bound * 1000);
  }

  _stop(code, reason, why) {
    this._generation += 1;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const queued = this._queue;
    this._queue = [];
    for (const { entry } of queued) {
      clearTimeout(entry.timer);
      entry.reject(new WsguardError(0, why, "the client is closed"));
    }
    this._setState("closed");
    this._emit("closed", { code, reason, reconnect: false });
    const connected = this._connected;
    this._connected = null;
    if (connected !== null) {
      connected.reject(new WsguardError(0, why, `closed with ${code} ${reason}`.trim()));
    }
  }

  // ------------------------------------------------------------------ receiving

  _receive(data) {
    let message;
    try {
      message = typeof data === "string" ? JSON.parse(data) : null;
    } catch {
      message = null;
    }
    if (message === null || typeof message !== "object" || Array.isArray(message)) {
      this._emit("error", new WsguardError(0, "bad_frame", "the server sent a non-protocol frame"));
      return;
    }
    if (typeof message.push === "string") this._onPush(message);
    else if ("ok" in message) this._onReply(message);
  }

  _onReply(message) {
    const entry = message.id === undefined ? undefined : this._pending.get(message.id);
    if (entry === undefined) {
      // A refusal the server could not tie to a request (rate_limited, bad_json, ...): the
      // request it belongs to runs into its timeout.
      if (!message.ok) this._emit("error", replyError(message));
      return;
    }
    this._pending.delete(message.id);
    clearTimeout(entry.timer);
    if (message.ok) entry.resolve(message.result);
    else entry.reject(replyError(message));
  }

  _onPush(push) {
    switch (push.push) {
      case "message": {
        const sub = this._subs.get(push.channel);
        if (sub !== undefined && sub._confirmed) sub._deliver(push);
        break;
      }
      case "recovered": {
        const sub = this._subs.get(push.channel);
        if (sub === undefined) break;
        if (push.epoch !== sub._epoch || push.offset > sub._offset) {
          sub._epoch = push.epoch;
          sub._offset = push.offset;
        }
        const info = {
          channel: push.channel,
          complete: push.complete,
          epoch: push.epoch,
          offset: push.offset,
        };
        this._emit("recovered", info);
        if (!push.complete && typeof sub.onGap === "function") {
          try {
            sub.onGap({ channel: push.channel, epoch: push.epoch, offset: push.offset });
          } catch (error) {
            report(error);
          }
        }
        break;
      }
      case "unsubscribed":
        this._forget(push.channel, push.reason);
        break;
      case "welcome":
        this._onWelcome(push);
        break;
      case "expiring":
        this._emit("expiring", { in: push.in });
        this._refresh();
        break;
      default:
        break; // a push of a later protocol version
    }
  }

  _onWelcome(welcome) {
    clearTimeout(this._welcomeTimer);
    this._welcomeTimer = null;
    this._welcomed = true;
    this._welcome = welcome;
    this._attempt = 0;
    this._setState("open");
    this._emit("welcome", welcome);
    if (welcome.protocol !== PROTOCOL) {
      const message = `the server speaks protocol ${welcome.protocol}`;
      this._emit("error", new WsguardError(0, "protocol", message));
    }
    const connected = this._connected;
    this._connected = null;
    if (connected !== null) connected.resolve(welcome);
    // Resume every confirmed subscription from its position, then send what waited.
    for (const sub of this._subs.values()) {
      if (sub._confirmed) this._resubscribe(sub);
    }
    const queued = this._queue;
    this._queue = [];
    for (const { frame, entry } of queued) this._transmit(frame, entry);
  }

  _forget(channel, reason) {
    const sub = this._subs.get(channel);
    if (sub === undefined) return;
    this._subs.delete(channel);
    sub._active = false;
    this._emit("unsubscribed", { channel, reason });
  }

  // ------------------------------------------------------------------ requests

  // Send a request and resolve with its result. Made while the client is (re)connecting, it
  // waits for the welcome; its timeout runs meanwhile. `direct` sends before the welcome (auth).
  _call(fields, { direct = false, timeout = this._timeout } = {}) {
    return new Promise((resolve, reject) => {
      if (this._state === "closed") {
        reject(new WsguardError(0, "closed", "the client is closed"));
        return;
      }
      const frame = { id: this._nextId++, ...fields };
      const entry = { resolve, reject, timer: null };
      entry.timer = setTimeout(() => {
        this._pending.delete(frame.id);
        this._queue = this._queue.filter((item) => item.entry !== entry);
        reject(new WsguardError(0, "timeout", `no reply within ${timeout} s`));
      }, timeout * 1000);
      if (direct || this._welcomed) this._transmit(frame, entry);
      else this._queue.push({ frame, entry });
    });
  }

  _transmit(frame, entry) {
    const ws = this._ws;
    if (ws === null || ws.readyState !== WebSocket.OPEN) {
      clearTimeout(entry.timer);
      entry.reject(new WsguardError(0, "disconnected", "not connected"));
      return;
    }
    this._pending.set(frame.id, entry);
    ws.send(JSON.stringify(frame));
  }

  /**
   * Subscribe to `channel`. `onMessage(data, {channel, epoch, offset})` gets every publication
   * once, in order, across reconnects (the client resubscribes with the last position and the
   * server replays what was missed). When a recovery cannot be complete (history no longer
   * holds what was missed), the `recovered` event says `complete: false` and `options.onGap`
   * is called: reload the state you derive from the channel.
   *
   * @param {string} channel
   * @param {(data: any, meta: {channel: string, epoch: string, offset: number}) => void} onMessage
   * @param {{onGap?: (gap: {channel: string, epoch: string, offset: number}) => void,
   *   since?: {epoch: string, offset: number}}} [options] `since` resumes from a stored position
   * @returns {Promise<Subscription>} rejects with the server's WsguardError (403 `forbidden`,
   *   404 `unknown_channel`, ...)
   */
  async subscribe(channel, onMessage, options = {}) {
    if (typeof onMessage !== "function") throw new TypeError("onMessage must be a function");
    if (this._subs.has(channel)) {
      throw new WsguardError(0, "already_subscribed", `already subscribed to ${channel}`);
    }
    const sub = new Subscription(this, channel, onMessage, options);
    this._subs.set(channel, sub);
    const since = sub._since();
    let result;
    try {
      result = await this._call(subscribeFields(channel, since));
    } catch (error) {
      if (this._subs.get(channel) === sub) this._subs.delete(channel);
      sub._active = false;
      throw error;
    }
    if (!sub._active) {
      // Unsubscribed while the reply was on its way: undo it on the server too.
      if (this._subs.get(channel) === undefined) {
        this._call({ op: "unsubscribe", channel }).catch(() => {});
      }
      return sub;
    }
    if (!since) {
      sub._epoch = result.epoch;
      sub._offset = result.offset;
    }
    sub._confirmed = true;
    return sub;
  }

  _resubscribe(sub) {
    const since = sub._since();
    this._call(subscribeFields(sub.channel, since), { direct: true }).then(
      (result) => {
        if (!since && sub._active) {
          sub._epoch = result.epoch;
          sub._offset = result.offset;
        }
      },
      (error) => {
        if (error.reason === "disconnected" || error.reason === "closed") return;
        if (error.reason === "timeout" || error.code >= 500) {
          // Transient (the broker is unavailable): drop the socket and retry with backoff,
          // rather than run on without the channel.
          this._emit("error", error);
          const ws = this._ws;
          if (ws === null) return;
          this._detach();
          ws.close(4000, "resubscribe failed");
          this._dropped(1006, "resubscribe failed");
          return;
        }
        // Refused for good (the grant is gone): the subscription ends.
        this._emit("error", error);
        this._forget(sub.channel, error.reason);
      },
    );
  }

  async _unsubscribe(sub) {
    if (this._subs.get(sub.channel) !== sub) {
      sub._active = false;
      return;
    }
    this._subs.delete(sub.channel);
    sub._active = false;
    if (!this._welcomed || !sub._confirmed) return;
    try {
      await this._call({ op: "unsubscribe", channel: sub.channel });
    } catch (error) {
      // Not subscribed any more on the server, or the socket is gone: nothing to undo.
      if (error.reason === "not_subscribed" || error.code === 0) return;
      throw error;
    }
  }

  /**
   * Publish `data` (any JSON value) on `channel`.
   * @param {string} channel
   * @param {any} data
   * @returns {Promise<{epoch: string, offset: number}>} rejects with the server's WsguardError
   *   (403 `forbidden`, 422 `invalid_data`, 503 `unavailable`, ...)
   */
  publish(channel, data) {
    return this._call({ op: "publish", channel, data: data === undefined ? null : data });
  }

  /**
   * Call the server's rpc method `method` with `data`.
   * @param {string} method
   * @param {any} [data]
   * @param {{timeout?: number}} [options] seconds to wait for the reply (default: the client's)
   * @returns {Promise<any>} the handler's result; rejects with the server's WsguardError
   *   (404 `unknown_method`, 403 `forbidden`, 422 `invalid_data`, 503 `timeout`, ...)
   */
  rpc(method, data, options = {}) {
    const fields = data === undefined ? { op: "rpc", method } : { op: "rpc", method, data };
    const timeout = positiveSeconds(options.timeout, this._timeout, "timeout");
    return this._call(fields, { timeout });
  }

  /**
   * The retained publications of `channel` after `since` (from the oldest retained without).
   * @param {string} channel
   * @param {{since?: {epoch: string, offset: number}, limit?: number}} [options]
   * @returns {Promise<{publications: {offset: number, data: any}[], epoch: string,
   *   offset: number, complete: boolean}>}
   */
  history(channel, options = {}) {
    const fields = { op: "history", channel };
    if (options.since) fields.since = { epoch: options.since.epoch, offset: options.since.offset };
    if (options.limit !== undefined) fields.limit = options.limit;
    return this._call(fields);
  }

  /**
   * The connections subscribed to `channel`, by client id.
   * @param {string} channel
   * @returns {Promise<{clients: Record<string, {user: string | null}>}>}
   */
  presence(channel) {
    return this._call({ op: "presence", channel });
  }

  /**
   * A round trip to the server.
   * @returns {Promise<void>}
   */
  async ping() {
    await this._call({ op: "ping" });
  }

  // ------------------------------------------------------------------ credentials

  // Call a credential provider, within the client's timeout; a WsguardError "credential" when it
  // fails, hangs or returns something other than a non-empty string.
  async _credential(provider) {
    let timer;
    const expired = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no credential within ${this._timeout} s`)),
        this._timeout * 1000,
      );
    });
    try {
      const credential = await Promise.race([provider(), expired]);
      if (typeof credential !== "string" || credential === "") {
        throw new Error("the credential provider must return a non-empty string");
      }
      return credential;
    } catch (error) {
      throw new WsguardError(0, "credential", String((error && error.message) || error));
    } finally {
      clearTimeout(timer);
    }
  }

  // The server pushed `expiring`: fetch a fresh credential and send it on the same socket. A
  // failure is reported; the socket stays until the server closes it (4401 after the grace).
  async _refresh() {
    if (this._refreshing || (this._ticket === null && this._token === null)) return;
    this._refreshing = true;
    const ws = this._ws;
    try {
      const field = this._ticket !== null ? "ticket" : "token";
      const credential = await this._credential(this._ticket || this._token);
      if (this._ws !== ws) return;
      await this._call({ op: "refresh", [field]: credential }, { direct: true });
    } catch (error) {
      if (this._ws === ws) this._emit("error", error);
    } finally {
      if (this._ws === ws) this._refreshing = false;
    }
  }
}

function subscribeFields(channel, since) {
  return since ? { op: "subscribe", channel, since } : { op: "subscribe", channel };
}

function replyError(message) {
  const error = message.error || {};
  const code = typeof error.code === "number" ? error.code : 0;
  const reason = typeof error.reason === "string" ? error.reason : "error";
  return new WsguardError(code, reason, typeof error.message === "string" ? error.message : reason);
}
