// Cross-Site WebSocket Hijacking attempt, as in the source documents' proof of concept.
const result = document.getElementById("result");
const target = new URLSearchParams(location.search).get("target")
  || `ws://${location.hostname}:${Number(location.port) - 1}/ws`;
let opened = false;
const socket = new WebSocket(target);
socket.addEventListener("open", () => { opened = true; });
socket.addEventListener("message", (event) => {
  result.textContent = `HIJACKED: read ${event.data}`;
  result.className = "hijacked";
});
socket.addEventListener("close", (event) => {
  if (!opened) {
    result.textContent = `BLOCKED: the server refused the handshake (close ${event.code}; `
      + "the server's audit log shows 403 origin_not_allowed)";
    result.className = "blocked";
  }
});
