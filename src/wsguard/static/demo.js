// The demo page's client. Everything is rendered with textContent and createElement, never
// innerHTML: data from the socket is text, whatever it looks like.
const $ = (id) => document.getElementById(id);
const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
const CHAT = "chat:lobby";
const TICKERS = ["ticker:ACME", "ticker:GLOBEX"];
// Replies to these labels are handled quietly (no log line) unless they are errors.
const QUIET = new Set(["presence"]);

$("attacker-link").href = `http://${location.hostname}:${Number(location.port) + 1}/`;

let socket = null;
let nextId = 1;
let pending = new Map(); // request id -> {label, onResult}
let presenceTimer = null;
let tickerUpdates = 0;
const myOffsets = new Set(); // offsets of chat publications this page made

// ------------------------------------------------------------------ log

function logLine(text, kind = "") {
  const item = document.createElement("li");
  item.textContent = text;
  if (kind) item.className = kind;
  const log = $("log");
  log.append(item);
  log.scrollTop = log.scrollHeight; // scrolls the log box, never the page
}

// ------------------------------------------------------------------ sending

function send(message, label, onResult) {
  if (socket === null || socket.readyState !== WebSocket.OPEN) {
    logLine(`not connected: ${label} not sent`, "error");
    return;
  }
  const frame = { id: nextId++, ...message };
  pending.set(frame.id, { label, onResult });
  socket.send(JSON.stringify(frame));
  if (QUIET.has(label)) return;
  // A ticket is a credential: it never appears on the page, even in the log.
  const shown = "ticket" in frame ? { ...frame, ticket: "…" } : frame;
  logLine(`→ ${JSON.stringify(shown)}`, "sent");
}

// ------------------------------------------------------------------ joining

function randomName() {
  const digits = new Uint16Array(1);
  crypto.getRandomValues(digits);
  return `guest${digits[0] % 1000}`;
}

async function fetchTicket(name) {
  const response = await fetch(`/demo/ticket?user=${encodeURIComponent(name)}`, {
    cache: "no-store",
  });
  if (response.status === 404) return null; // no ticket endpoint: not in demo mode
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = body.error || {};
    throw new Error(`ticket refused: ${response.status} ${error.reason || ""} ${error.message || ""}`);
  }
  return body.ticket;
}

function join(name) {
  disconnect();
  if (!/^[a-z0-9]{1,16}$/.test(name)) {
    logLine("a name is 1 to 16 characters a-z, 0-9", "error");
    return;
  }
  // The socket opens without a credential (pending) while the ticket is fetched; the ticket
  // then goes in the first message.
  connect(fetchTicket(name));
}

function disconnect() {
  if (socket !== null) {
    socket.close(1000);
    socket = null;
  }
  clearInterval(presenceTimer);
  pending = new Map();
  nextId = 1;
}

function connect(ticketPromise) {
  const ws = new WebSocket(wsUrl);
  socket = ws;
  $("status").textContent = "connecting…";
  ws.addEventListener("open", () => {
    if (ws !== socket) return;
    $("status").textContent = "open";
  });
  Promise.all([ticketPromise, new Promise((resolve) => ws.addEventListener("open", resolve))])
    .then(([ticket]) => {
      // Without a ticket (a server not in demo mode) the server decides what the socket is.
      if (ws === socket && ticket) send({ op: "auth", ticket }, "auth");
    })
    .catch((error) => {
      if (ws !== socket) return;
      logLine(String(error.message || error), "error");
      ws.close(1000);
    });
  ws.addEventListener("message", (event) => {
    if (ws === socket) receive(event.data);
  });
  ws.addEventListener("close", (event) => {
    if (ws !== socket) return;
    $("status").textContent = `closed (code ${event.code})`;
    $("who").textContent = "nobody";
    clearInterval(presenceTimer);
    logLine(`closed: ${event.code} ${event.reason}`, "error");
    socket = null;
  });
}

// ------------------------------------------------------------------ receiving

function receive(text) {
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    logLine(`← (not JSON) ${text}`, "error");
    return;
  }
  if (message.push === "message") {
    onPublication(message);
    return;
  }
  if (message.push === "welcome") {
    logLine(`← ${text}`);
    $("who").textContent = message.user === null ? "anonymous" : message.user;
    onWelcome();
    return;
  }
  if (message.push !== undefined) {
    logLine(`← ${text}`);
    return;
  }
  const request = pending.get(message.id);
  pending.delete(message.id);
  const label = request ? request.label : "?";
  if (!message.ok || !QUIET.has(label)) {
    logLine(`← ${text}  (${label})`, message.ok ? "" : "error");
  }
  if (message.ok && request && request.onResult) request.onResult(message.result);
}

function onWelcome() {
  send({ op: "subscribe", channel: CHAT }, `subscribe ${CHAT}`, () => {
    send({ op: "history", channel: CHAT, limit: 50 }, `history ${CHAT}`, (result) => {
      for (const publication of result.publications) addChat(publication.offset, publication.data);
    });
  });
  for (const channel of TICKERS) send({ op: "subscribe", channel }, `subscribe ${channel}`);
  refreshPresence();
  presenceTimer = setInterval(refreshPresence, 5000);
}

function onPublication(message) {
  if (message.channel === CHAT) {
    addChat(message.offset, message.data);
  } else if (TICKERS.includes(message.channel)) {
    updateTicker(message.data);
  } else {
    logLine(`← ${JSON.stringify(message)}`);
  }
}

// ------------------------------------------------------------------ chat

// The server HTML-escaped every string once before fan-out (encode = "html"), so a page that
// inserted it as HTML would still be safe. This page inserts text, so it first undoes the
// escaping; the result goes into textContent and is displayed, never parsed.
const ENTITIES = { "&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#x27;": "'", "&#39;": "'" };
function unescapeHtml(text) {
  return text.replace(/&(?:amp|lt|gt|quot|#x27|#39);/g, (entity) => ENTITIES[entity]);
}

function addChat(offset, data) {
  const chat = $("chat");
  const items = Array.from(chat.children);
  if (items.some((item) => Number(item.dataset.offset) === offset)) return; // history + live
  const item = document.createElement("li");
  item.dataset.offset = String(offset);
  const wire = data && typeof data.text === "string" ? data.text : JSON.stringify(data);
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = unescapeHtml(wire);
  item.title = `on the wire: ${wire}`;
  item.append(text);
  if (myOffsets.has(offset)) item.classList.add("mine");
  // Keep publication order whatever order history and live pushes arrive in.
  const after = items.find((other) => Number(other.dataset.offset) > offset);
  chat.insertBefore(item, after || null);
  if (!after) chat.scrollTop = chat.scrollHeight;
}

function publishChat(text) {
  send({ op: "publish", channel: CHAT, data: { text } }, `publish ${CHAT}`, (result) => {
    myOffsets.add(result.offset);
    const mine = $("chat").querySelector(`li[data-offset="${Number(result.offset)}"]`);
    if (mine) mine.classList.add("mine");
  });
}

// ------------------------------------------------------------------ presence

function refreshPresence() {
  send({ op: "presence", channel: CHAT }, "presence", (result) => {
    const users = Object.values(result.clients).map((client) => client.user || "anonymous");
    $("online").textContent = users.length ? [...new Set(users)].sort().join(", ") : "–";
  });
}

// ------------------------------------------------------------------ ticker

function updateTicker(tick) {
  tickerUpdates += 1;
  $("ticker-updates").textContent = String(tickerUpdates);
  const body = $("ticker-body");
  const symbol = String(tick.symbol);
  let row = Array.from(body.rows).find((r) => r.dataset.symbol === symbol);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.symbol = symbol;
    for (let i = 0; i < 4; i++) row.append(document.createElement("td"));
    body.append(row);
  }
  const change = Number(tick.change);
  const [symbolCell, priceCell, changeCell, timeCell] = row.cells;
  symbolCell.textContent = symbol;
  priceCell.textContent = Number(tick.price).toFixed(2);
  changeCell.textContent = `${change > 0 ? "▲ +" : change < 0 ? "▼ " : ""}${change.toFixed(2)}`;
  changeCell.className = change > 0 ? "up" : change < 0 ? "down" : "";
  timeCell.textContent = new Date(Number(tick.ts) * 1000).toLocaleTimeString();
}

// ------------------------------------------------------------------ controls

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  join($("user").value);
});
$("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("chat-text");
  if (input.value) publishChat(input.value);
  input.value = "";
});
$("xss-button").addEventListener("click", () => publishChat("<img src=x onerror=alert(1)>"));
$("publish-ticker").addEventListener("click", () => {
  send({ op: "publish", channel: "ticker:ACME", data: { price: 0.01 } }, "publish ticker:ACME");
});
$("subscribe-other").addEventListener("click", () => {
  send({ op: "subscribe", channel: "user:admin" }, "subscribe user:admin");
});
$("publish-extra").addEventListener("click", () => {
  send({ op: "publish", channel: CHAT, data: { text: "hi", user: "admin" } }, `publish ${CHAT}`);
});
$("raw-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (socket === null || socket.readyState !== WebSocket.OPEN) {
    logLine("not connected: raw message not sent", "error");
    return;
  }
  const text = $("raw-message").value;
  try {
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed === "object" && "id" in parsed) {
      pending.set(parsed.id, { label: "raw" });
    }
  } catch {
    // Broken JSON is the point of some tries: send it anyway, the server answers.
  }
  socket.send(text);
  logLine(`→ ${text}`, "sent");
});

// Join at once under ?user=NAME or a random guest name; the form joins again under another.
const initial = new URLSearchParams(location.search).get("user") || randomName();
$("user").value = initial;
join(initial);
