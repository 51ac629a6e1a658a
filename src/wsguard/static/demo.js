// The demo page's client: renders everything with textContent, never innerHTML.
const status = document.getElementById("status");
const log = document.getElementById("log");
const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
const attackerPort = Number(location.port) + 1;
document.getElementById("attacker-link").href =
  `http://${location.hostname}:${attackerPort}/`;

function show(text) {
  const item = document.createElement("li");
  item.textContent = text;
  log.append(item);
}

const socket = new WebSocket(wsUrl);
socket.addEventListener("open", () => { status.textContent = "open"; });
socket.addEventListener("message", (event) => show(event.data));
socket.addEventListener("close", (event) => {
  status.textContent = `closed (code ${event.code})`;
});
document.getElementById("send-form").addEventListener("submit", (event) => {
  event.preventDefault();
  socket.send(document.getElementById("message").value);
});
