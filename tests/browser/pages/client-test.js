// The page the browser tests of wsguard.js drive (tests/browser/test_client_js.py). It runs one
// WsguardClient, records every event in window.wsguardTest.record, and shows messages with
// text(). The credential comes from window.wsguardCredential, a Python function the test
// exposes (Playwright's expose_function): it mints a ticket or a JWT for ?user=. With ?server=
// HOST:PORT the page is an app on another origin that imports wsguard.js from the server.
const params = new URLSearchParams(location.search);
const server = params.get("server") || location.host;
const wsguard = await import(`http://${server}/wsguard.js`);

const { WsguardClient, WsguardError, text } = wsguard;
const user = params.get("user") || "alice";
const auth = params.get("auth") || "ticket"; // "ticket" or "token"

const record = {
  states: [],
  welcomes: [],
  closed: [],
  errors: [],
  recovered: [],
  expiring: [],
  gaps: [],
  received: [],
};

const client = new WsguardClient(`ws://${server}/ws`, {
  [auth]: () => window.wsguardCredential(user, auth),
  // Short delays keep the restart test quick; the formula is the production one.
  backoff: { base: 0.05, cap: 0.4 },
  timeout: Number(params.get("timeout") || "5"),
});

client.on("state", (state) => {
  record.states.push(state);
  text(document.getElementById("state"), state);
});
client.on("welcome", (welcome) => record.welcomes.push(welcome));
client.on("closed", (closed) => {
  record.closed.push(closed);
  text(document.getElementById("status"), `closed ${closed.code} ${closed.reason}`);
});
client.on("error", (error) => record.errors.push({ code: error.code, reason: error.reason }));
client.on("recovered", (recovered) => record.recovered.push(recovered));
client.on("expiring", (expiring) => record.expiring.push(expiring));

// A promise's outcome as plain data (a WsguardError keeps its code and reason).
async function outcome(promise) {
  try {
    return { ok: true, value: (await promise) ?? null };
  } catch (error) {
    return {
      ok: false,
      wsguardError: error instanceof WsguardError,
      code: error.code,
      reason: error.reason,
    };
  }
}

function subscribe(channel) {
  const onMessage = (data, meta) => {
    record.received.push({ channel, epoch: meta.epoch, offset: meta.offset, data });
    const item = document.createElement("li");
    document.getElementById("messages").append(text(item, data.text));
  };
  const promise = client
    .subscribe(channel, onMessage, { onGap: (gap) => record.gaps.push(gap) })
    .then((sub) => ({ channel: sub.channel, epoch: sub.epoch, offset: sub.offset }));
  return outcome(promise);
}

window.wsguardTest = {
  client,
  record,
  outcome,
  subscribe,
  exports: Object.keys(wsguard).sort(),
};
client.connect();
