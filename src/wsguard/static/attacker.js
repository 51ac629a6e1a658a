// Cross-Site WebSocket Hijacking attempts, as in the source documents' proof of concept.
// ?target=ws://HOST:PORT/ws names the victim (default: the port below this page's).
const target = new URLSearchParams(location.search).get("target")
  || `ws://${location.hostname}:${Number(location.port) - 1}/ws`;

function show(id, text, className) {
  const element = document.getElementById(id);
  element.textContent = text;
  element.className = className;
}

// 1. The socket: the browser sends this page's Origin, and the server refuses the handshake.
let opened = false;
const socket = new WebSocket(target);
socket.addEventListener("open", () => { opened = true; });
socket.addEventListener("message", (event) => {
  show("result", `HIJACKED: read ${event.data}`, "hijacked");
});
socket.addEventListener("close", (event) => {
  if (!opened) {
    show("result", `BLOCKED: the server refused the handshake (close ${event.code}; `
      + "the server's audit log shows 403 origin_not_allowed)", "blocked");
  }
});

// 2. The ticket: a cross-site request. The server answers 403 (Sec-Fetch-Site: same-site,
// a foreign Origin) and, like any response without CORS headers, the browser keeps it from
// this page. Either defence alone stops the theft.
const ticketUrl = new URL("/demo/ticket?user=victim", target.replace(/^ws/, "http"));
fetch(ticketUrl, { cache: "no-store" })
  .then(async (response) => {
    const body = await response.text();
    show("ticket-result", `HIJACKED: got a ticket (${response.status}) ${body}`, "hijacked");
  })
  .catch(() => {
    show("ticket-result", "BLOCKED: the server refused the cross-site request (403) and the "
      + "browser withheld the response (no CORS headers)", "blocked");
  });
