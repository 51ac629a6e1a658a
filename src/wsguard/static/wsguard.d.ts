// Type declarations of wsguard.js, the browser client of the wsguard wire protocol (version 1).
// Served by every wsguard server at GET /wsguard.d.ts.

/** The connection state. Starts `"closed"`, until `connect()`. */
export type State = "connecting" | "open" | "reconnecting" | "closed";

/** A position in a channel's stream. */
export interface Position {
  epoch: string;
  offset: number;
}

/** The first push of every connection. */
export interface Welcome {
  push: "welcome";
  server: "wsguard";
  protocol: number;
  /** The user id, `null` on an anonymous connection. */
  user: string | null;
  auth: "ticket" | "jwt" | "cookie" | "basic" | "mtls" | "anonymous";
  /** This connection's id (the key of `presence` results). */
  client: string;
}

export interface ClosedEvent {
  /** The close code (1006 when the socket dropped or the handshake failed). */
  code: number;
  reason: string;
  /** Whether the client reconnects by itself. */
  reconnect: boolean;
}

export interface RecoveredEvent {
  channel: string;
  /** `false`: publications were missed that history no longer holds (resynchronise). */
  complete: boolean;
  epoch: string;
  offset: number;
}

export interface Gap {
  channel: string;
  epoch: string;
  offset: number;
}

export interface ExpiringEvent {
  /** Seconds before the credential expires. */
  in: number;
}

export interface UnsubscribedEvent {
  channel: string;
  /** The server's reason (`"forbidden"`: a refresh removed the grant). */
  reason: string;
}

export interface ClientEvents {
  state: State;
  welcome: Welcome;
  closed: ClosedEvent;
  error: WsguardError;
  recovered: RecoveredEvent;
  expiring: ExpiringEvent;
  unsubscribed: UnsubscribedEvent;
}

export interface MessageMeta {
  channel: string;
  epoch: string;
  offset: number;
}

export interface SubscribeOptions {
  /** Called when a recovery reports a gap (`recovered` with `complete: false`). */
  onGap?: (gap: Gap) => void;
  /** Resume from a stored position: missed publications are replayed first. */
  since?: Position;
}

export interface HistoryOptions {
  since?: Position;
  /** 1 to 1000; the server's default is 100. */
  limit?: number;
}

export interface HistoryResult {
  publications: { offset: number; data: unknown }[];
  epoch: string;
  offset: number;
  complete: boolean;
}

export interface PresenceResult {
  clients: Record<string, { user: string | null }>;
}

export interface ClientOptions {
  /** Fetches a fresh single-use ticket: before every connect and reconnect, and on `expiring`. */
  ticket?: () => Promise<string>;
  /** Fetches a JWT, sent in the first message (never in the URL): each connect and `expiring`. */
  token?: () => Promise<string>;
  /** Reconnect delays in seconds: random up to min(cap, base × 2^attempt). Default 0.5 and 30. */
  backoff?: { base?: number; cap?: number };
  /** Seconds a request, a credential provider and a connect may take. Default 10. */
  timeout?: number;
  /** Reconnect attempts without a welcome before giving up. Default Infinity. */
  maxRetries?: number;
}

/**
 * A refused or failed request. `code` is the server's reply code (400 … 503), or 0 for a
 * failure on the client's side (`reason` `"timeout"`, `"disconnected"`, `"closed"`,
 * `"already_subscribed"`, `"credential"`, `"bad_frame"`, `"bad_url"`, `"protocol"`).
 */
export class WsguardError extends Error {
  constructor(code: number, reason: string, message?: string);
  readonly name: "WsguardError";
  code: number;
  reason: string;
}

/** A channel subscription; `epoch`/`offset` are the last position processed. */
export interface Subscription {
  readonly channel: string;
  readonly epoch: string | null;
  readonly offset: number;
  /** Whether the subscription is still in force. */
  readonly active: boolean;
  onGap: ((gap: Gap) => void) | null;
  unsubscribe(): Promise<void>;
}

export class WsguardClient {
  constructor(url: string | URL, options?: ClientOptions);
  readonly state: State;
  /** The last `welcome` push, `null` before the first. */
  readonly welcome: Welcome | null;
  on<K extends keyof ClientEvents>(event: K, handler: (value: ClientEvents[K]) => void): () => void;
  connect(): Promise<Welcome>;
  close(): void;
  subscribe(
    channel: string,
    onMessage: (data: any, meta: MessageMeta) => void,
    options?: SubscribeOptions,
  ): Promise<Subscription>;
  publish(channel: string, data: unknown): Promise<Position>;
  rpc(method: string, data?: unknown, options?: { timeout?: number }): Promise<any>;
  history(channel: string, options?: HistoryOptions): Promise<HistoryResult>;
  presence(channel: string): Promise<PresenceResult>;
  ping(): Promise<void>;
}

/** Show `value` as text in `element` (textContent, never markup); returns the element. */
export function text<T extends Node>(element: T, value: unknown): T;
