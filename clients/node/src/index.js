'use strict';
// feedchat's Node.js client: sign-up/login with token refresh, feed, router and a
// self-healing chat connection (redirects, moves, reconnect with backoff + jitter,
// cursor resume, de-duplication, send retries with the same client_msg_id). The chat
// connection follows docs/chat.md "The client algorithm"; the chat poller does the same
// with unary calls only (PollInbox long polls + SendMessage; docs/chat.md "Without a
// stream").

const crypto = require('crypto');
const { EventEmitter } = require('events');
const grpc = require('@grpc/grpc-js');
const { loadServices, errorDetails } = require('./protos');

const services = loadServices();

/** A failed RPC with feedchat's rich details (code, reason, metadata, retryAfter). */
class FeedchatError extends Error {
  constructor(details) {
    super(`${grpc.status[details.code] || details.code}: ${details.message}` +
      (details.reason ? ` (${details.reason})` : ''));
    Object.assign(this, details);
  }
}

/** A unary call; `onCall(call)` gets the call (to cancel it). */
function unary(client, method, request, metadata, deadlineSeconds = 10, onCall = null) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + deadlineSeconds * 1000);
    const call = client[method](request, metadata || new grpc.Metadata(), { deadline }, (err, reply) => {
      if (err) reject(new FeedchatError(errorDetails(err)));
      else resolve(reply);
    });
    if (onCall) onCall(call);
  });
}

function stampSeconds(ts) {
  return ts ? Number(ts.seconds) + (ts.nanos || 0) / 1e9 : 0;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One user's client. `addresses` names host:port per service: {account, feed, router,
 * presence}; chat servers are found through the router.
 */
class FeedchatClient {
  constructor(addresses, { credentials = grpc.credentials.createInsecure(), refreshMarginSeconds = 60 } = {}) {
    this.addresses = addresses;
    this.credentials = credentials;
    this.refreshMarginSeconds = refreshMarginSeconds;
    this.tokens = null;
    this._clients = new Map();
    this._refreshing = null;
  }

  _client(Service, address) {
    const key = `${Service.serviceName}@${address}`;
    if (!this._clients.has(key)) this._clients.set(key, new Service(address, this.credentials));
    return this._clients.get(key);
  }

  _service(name) {
    const Service = {
      account: services.AccountService, feed: services.FeedService,
      router: services.RouterService, presence: services.PresenceService,
    }[name];
    if (!this.addresses[name]) throw new Error(`no address for ${name}`);
    return this._client(Service, this.addresses[name]);
  }

  _keep(reply) {
    this.tokens = {
      userId: reply.user_id,
      accessToken: reply.access_token,
      refreshToken: reply.refresh_token,
      accessExpiresAt: stampSeconds(reply.access_token_expires_at),
    };
    return this.tokens;
  }

  get userId() {
    if (!this.tokens) throw new Error('sign up or log in first');
    return this.tokens.userId;
  }

  async signUp(username, password, displayName = '') {
    return this._keep(await unary(this._service('account'), 'SignUp',
      { username, password, display_name: displayName }));
  }

  async logIn(username, password) {
    return this._keep(await unary(this._service('account'), 'Login', { username, password }));
  }

  /** Exchange the refresh token (rotating); concurrent callers share one refresh. */
  async refresh() {
    if (!this._refreshing) {
      this._refreshing = unary(this._service('account'), 'RefreshToken',
        { refresh_token: this.tokens.refreshToken })
        .then((reply) => this._keep(reply))
        .finally(() => { this._refreshing = null; });
    }
    return this._refreshing;
  }

  /** `authorization: Bearer` metadata with an access token refreshed before expiry. */
  async metadata() {
    if (!this.tokens) throw new Error('sign up or log in first');
    if (this.tokens.accessExpiresAt - Date.now() / 1000 < this.refreshMarginSeconds) {
      await this.refresh();
    }
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${this.tokens.accessToken}`);
    return md;
  }

  async _call(service, method, request) {
    try {
      return await unary(this._service(service), method, request, await this.metadata());
    } catch (err) {
      if (err.reason === 'TOKEN_EXPIRED') {
        await this.refresh();
        return unary(this._service(service), method, request, await this.metadata());
      }
      throw err;
    }
  }

  lookup(username) { return this._call('account', 'LookupUsername', { username }).then((r) => r.user); }
  /**
   * Publish a post. Every call carries a request id (a fresh UUID unless given): to retry a
   * call whose outcome is unknown, call again with the same `requestId` and get the first
   * call's post instead of a second one.
   */
  post(text, { requestId = crypto.randomUUID() } = {}) {
    return this._call('feed', 'CreatePost', { text, request_id: requestId }).then((r) => r.post);
  }
  follow(userId) { return this._call('feed', 'Follow', { user_id: userId }); }
  unfollow(userId) { return this._call('feed', 'Unfollow', { user_id: userId }); }
  getFeed({ pageSize = 20, pageToken = '' } = {}) {
    return this._call('feed', 'GetFeed', { page_size: pageSize, page_token: pageToken });
  }
  route(userId) { return this._call('router', 'Route', { user_id: userId }); }
  chatServers() { return this._call('router', 'ListChatServers', {}).then((r) => r.chat_servers); }
  presence(userIds) { return this._call('presence', 'GetPresence', { user_ids: userIds }); }

  /** Any chat server answers the unary chat RPCs: use the caller's own (from the router). */
  async _chatCall(method, request) {
    const owner = await this.route(this.userId);
    const client = this._client(services.ChatService, owner.address);
    return unary(client, method, request, await this.metadata());
  }

  openDirect(peerUserId) {
    return this._chatCall('OpenDirectChannel', { peer_user_id: peerUserId }).then((r) => r.channel);
  }
  history(channelId, pageSize = 50) {
    return this._chatCall('GetHistory', { channel_id: channelId, page_size: pageSize });
  }

  /**
   * One unary SendMessage (any chat server answers): resolves with the SendAck, retried
   * with the same client_msg_id on UNAVAILABLE and RESOURCE_EXHAUSTED (after retry_after),
   * so a retry of a stored message answers duplicate = true and stores nothing.
   */
  sendMessage(channelId, text, { clientMsgId = newId(), attempts = 8, replyTo = '0' } = {}) {
    const request = { client_msg_id: clientMsgId, channel_id: channelId, text, reply_to: replyTo };
    return this._stored('SendMessage', request, attempts);
  }

  /**
   * EditMessage: new text for a message this user sent (within the edit window); an event
   * in the channel's order. Resolves with its SendAck; retried like sendMessage.
   */
  editMessage(channelId, messageId, text, { clientMsgId = newId(), attempts = 8 } = {}) {
    const request = { client_msg_id: clientMsgId, channel_id: channelId, message_id: messageId, text };
    return this._stored('EditMessage', request, attempts);
  }

  /**
   * DeleteMessage: delete a message this user sent (a group's owner: anyone's). Resolves
   * with the delete event's SendAck; retried like sendMessage.
   */
  deleteMessage(channelId, messageId, { clientMsgId = newId(), attempts = 8 } = {}) {
    const request = { client_msg_id: clientMsgId, channel_id: channelId, message_id: messageId };
    return this._stored('DeleteMessage', request, attempts);
  }

  /** A unary send or channel event, retried with the same client_msg_id when retryable. */
  async _stored(method, request, attempts) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return (await this._chatCall(method, request)).ack;
      } catch (err) {
        const retryable = [grpc.status.UNAVAILABLE, grpc.status.RESOURCE_EXHAUSTED].includes(err.code);
        if (!retryable || attempt + 1 >= attempts) throw err;
        await sleep(err.retryAfter ? err.retryAfter * 1000 : 200 * 2 ** attempt);
      }
    }
  }

  /** Message counts per bucket ('minute' | 'hour' | 'day') of a channel (0: all yours). */
  messageStats(channelId, { bucket = 'hour', startMs = 0, endMs = 0 } = {}) {
    return this._chatCall('GetMessageStats', {
      channel_id: channelId, bucket: `STATS_BUCKET_${bucket.toUpperCase()}`, start_ms: startMs, end_ms: endMs,
    });
  }

  /** A started ChatPoller for this device: chat on unary calls only (see ChatPoller). */
  pollChat(deviceId, options = {}) {
    const poller = new ChatPoller(this, deviceId, options);
    poller.start();
    return poller;
  }

  /** A started ChatConnection for this device (see ChatConnection). */
  connectChat(deviceId, options = {}) {
    const conn = new ChatConnection(this, deviceId, options);
    conn.start();
    return conn;
  }

  close() {
    for (const client of this._clients.values()) client.close();
    this._clients.clear();
  }
}

function newId() {
  return crypto.randomUUID().replace(/-/g, '');
}

function cursorKey(cursor) {
  if (!cursor) return [-1, -1];
  const [ms, seq] = cursor.split('-');
  return [Number(ms), Number(seq || 0)];
}
function cursorAfter(a, b) {
  const [x, y] = [cursorKey(a), cursorKey(b)];
  return x[0] > y[0] || (x[0] === y[0] && x[1] > y[1]);
}

/**
 * What a chat device does with what it receives, whatever carries it: each message
 * emitted once ('message'), progress ('state'), backoff with full jitter, waitFor.
 */
class ChatDevice extends EventEmitter {
  constructor(client, deviceId, { cursor = '', baseDelayMs = 200, maxDelayMs = 10000, maxRedirects = 5 } = {}) {
    super();
    this.client = client;
    this.deviceId = deviceId;
    this.cursor = cursor;
    this.baseDelayMs = baseDelayMs;
    this.maxDelayMs = maxDelayMs;
    this.maxRedirects = maxRedirects;
    this.instance = '';
    this.redirects = 0;
    this._attempt = 0;
    this._seen = new Set();
    this._closed = false;
  }

  _state(state, detail) { this.emit('state', state, detail); }

  /** Full jitter: uniform(0, min(cap, base * 2^attempt)). */
  _backoffMs() {
    const bound = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** this._attempt);
    this._attempt = Math.min(this._attempt + 1, 30);
    return Math.random() * bound;
  }

  /** Emit a message unless its id was seen (a window of the last 10,000). */
  _emitOnce(message) {
    if (this._seen.has(message.message_id)) return;
    this._seen.add(message.message_id);
    if (this._seen.size > 10000) this._seen.delete(this._seen.values().next().value);
    this.emit('message', message);
  }

  /** Resolves with the first message (from now on) that satisfies `predicate`. */
  waitFor(predicate, timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.off('message', onMessage); reject(new Error('timed out waiting for a message')); }, timeoutMs);
      const onMessage = (message) => {
        if (predicate(message)) { clearTimeout(timer); this.off('message', onMessage); resolve(message); }
      };
      this.on('message', onMessage);
    });
  }
}

/**
 * A device on unary calls only: long-polls PollInbox on the user's chat server and sends
 * with SendMessage. Events as ChatConnection's. Each poll passes the previous answer's
 * cursor (the ack); WRONG_CHAT_SERVER (also how a held poll ends when the ring moves the
 * user) is followed at once to the owner it names; other failures back off, route again
 * and resume from the cursor.
 */
class ChatPoller extends ChatDevice {
  /**
   * @param {object} [options] as ChatConnection's, plus waitSeconds: how long each poll
   *   may be held (default 25).
   */
  constructor(client, deviceId, options = {}) {
    super(client, deviceId, options);
    this.firstAddress = options.address || null;
    this.waitSeconds = options.waitSeconds || 25;
    this.polls = 0;
    this._inflight = null;
    this._sending = Promise.resolve();
  }

  async start() {
    let target = this.firstAddress;
    let ringVersion = 0;
    let streak = 0;
    while (!this._closed) {
      try {
        if (!target) {
          this._state('routing', this.client.userId);
          const route = await this.client.route(this.client.userId);
          target = route.address;
          ringVersion = route.ring_version || 0;
        }
        const chat = this.client._client(services.ChatService, target);
        const request = {
          device_id: this.deviceId, inbox_cursor: this.cursor, ring_version: ringVersion,
          wait: { seconds: this.waitSeconds, nanos: 0 },
        };
        const reply = await unary(chat, 'PollInbox', request, await this.client.metadata(),
          this.waitSeconds + 10, (call) => { this._inflight = call; });
        if (this._closed) return;
        if (this.polls === 0 || this.instance !== reply.instance) this._state('connected', `${reply.instance} (${target}), polling`);
        this.polls += 1;
        this.instance = reply.instance;
        this._attempt = 0;
        streak = 0;
        for (const message of reply.messages) this._emitOnce(message);
        if (reply.inbox_cursor && cursorAfter(reply.inbox_cursor, this.cursor)) this.cursor = reply.inbox_cursor;
      } catch (err) {
        if (this._closed) return;
        if (err.reason === 'WRONG_CHAT_SERVER' && streak < this.maxRedirects) {
          streak += 1;
          this.redirects += 1;
          target = err.metadata.owner_address || null;
          ringVersion = err.metadata.ring_version || 0;
          this._state('redirected', target || '');
        } else if (err.reason === 'TOKEN_EXPIRED') {
          await this.client.refresh();
        } else if ([grpc.status.UNAUTHENTICATED, grpc.status.PERMISSION_DENIED, grpc.status.INVALID_ARGUMENT].includes(err.code)) {
          this._closed = true;
          this.emit('error', err);
          return;
        } else {
          target = null;
          streak = 0;
          const delay = this._backoffMs();
          this._state('reconnecting', `${err.message}; next try in ${(delay / 1000).toFixed(2)}s`);
          await sleep(delay);
        }
      }
    }
  }

  /**
   * SendMessage (see FeedchatClient.sendMessage); resolves with the SendAck. One send at a
   * time, in call order (as a stream's sends are stored).
   */
  send(channelId, text, clientMsgId = newId()) {
    return this._inOrder(() => this.client.sendMessage(channelId, text, { clientMsgId }));
  }

  /** EditMessage (see FeedchatClient.editMessage), in order with sends. */
  edit(channelId, messageId, text, clientMsgId = newId()) {
    return this._inOrder(() => this.client.editMessage(channelId, messageId, text, { clientMsgId }));
  }

  /** DeleteMessage (see FeedchatClient.deleteMessage), in order with sends. */
  delete(channelId, messageId, clientMsgId = newId()) {
    return this._inOrder(() => this.client.deleteMessage(channelId, messageId, { clientMsgId }));
  }

  _inOrder(call) {
    const sent = this._sending.then(call);
    this._sending = sent.catch(() => {});
    return sent;
  }

  /** Stop polling (a poll in flight is cancelled). */
  close() {
    this._closed = true;
    if (this._inflight) this._inflight.cancel();
  }
}

/** Most sends in one send_batch frame (the server's bound). */
const MAX_SEND_BATCH = 64;

/**
 * Frames for requests made at once, in order: each run of sends as one `send` alone or
 * `send_batch` frames of at most 64; other requests (edits, deletes, reactions) as they are.
 */
function sendFrames(requests) {
  const frames = [];
  let run = [];
  const flush = () => {
    if (run.length === 1) frames.push({ send: run[0] });
    for (let start = 0; run.length > 1 && start < run.length; start += MAX_SEND_BATCH) {
      const sends = run.slice(start, start + MAX_SEND_BATCH);
      frames.push(sends.length === 1 ? { send: sends[0] } : { send_batch: { sends } });
    }
    run = [];
  };
  for (const request of requests) {
    if (request.send) {
      run.push(request.send);
    } else {
      flush();
      frames.push(request);
    }
  }
  flush();
  return frames;
}

/**
 * A device's chat stream that keeps itself connected. Events: 'message' (each inbox
 * message once; messages this connection sent are not echoed back to it live, only in a
 * replay after a reconnect: send() resolving confirms them), 'state' (state, detail),
 * 'error' (fatal).
 */
class ChatConnection extends ChatDevice {
  /**
   * @param {FeedchatClient} client
   * @param {string} deviceId each device keeps its own inbox cursor
   * @param {object} [options] cursor: resume point; address: first chat server to try
   *   (skips the router; a wrong one redirects); baseDelayMs/maxDelayMs: backoff.
   */
  constructor(client, deviceId, options = {}) {
    super(client, deviceId, options);
    this.firstAddress = options.address || null;
    this.connected = false;
    this._streak = 0;
    this._pending = new Map(); // client_msg_id -> {request, resolve, reject}
    this._reads = new Map(); // channel_id (string) -> newest seq marked read
    this._ringVersion = 0; // of the answer that named the server we connect to
    this._call = null;
    this._unsent = []; // sends made in this tick, written together by _flushSends
    this._ackDue = false; // an ack of the newest cursor is scheduled for this tick
  }

  async start() {
    let target = this.firstAddress;
    while (!this._closed) {
      let next;
      try {
        if (!target) {
          this._state('routing', this.client.userId);
          const route = await this.client.route(this.client.userId);
          target = route.address;
          this._ringVersion = route.ring_version || 0;
        }
        next = await this._stream(target);
      } catch (err) {
        if (err.fatal) {
          this._closed = true;
          this.emit('error', err);
          return;
        }
        next = { address: null, immediate: false, reason: err.message };
      }
      target = next.address;
      this._ringVersion = next.ringVersion || 0;
      let delay = 0;
      if (next.immediate && this._streak < this.maxRedirects) {
        this._streak += 1;
      } else {
        this._streak = 0;
        target = null;
        delay = this._backoffMs();
      }
      if (this._closed) return;
      this._state('reconnecting', `${next.reason}; next try in ${(delay / 1000).toFixed(2)}s`);
      await sleep(delay);
    }
  }

  _stream(address) {
    return new Promise((resolve, reject) => {
      this.client.metadata().then((md) => {
        this._state('connecting', address);
        const chat = this.client._client(services.ChatService, address);
        const call = chat.Connect(md);
        this._call = call;
        let settled = false;
        const settle = (value) => { if (!settled) { settled = true; this._call = null; this.connected = false; resolve(value); } };
        // batch_frames: frames waiting together come as one `batch` frame (unpacked below);
        // omit_own_echo: our own sends are confirmed by their send_ack, not echoed back
        call.write({
          hello: {
            device_id: this.deviceId, inbox_cursor: this.cursor, ring_version: this._ringVersion,
            batch_frames: true, omit_own_echo: true,
          },
        });
        // everything without a reply goes again: sends are idempotent (same client_msg_id),
        // read markers only move forward (no receipt unless they move)
        this._unsent = [];
        for (const frame of sendFrames([...this._pending.values()].map((p) => p.request))) call.write(frame);
        for (const [channelId, seq] of this._reads) call.write({ read: { channel_id: channelId, seq } });
        const handle = (frame) => {
          switch (frame.frame) {
            case 'batch': for (const inner of frame.batch.frames) handle(inner); break;
            case 'message': this._take(call, frame.message); break;
            case 'send_ack': {
              const pending = this._pending.get(frame.send_ack.client_msg_id);
              if (pending) { this._pending.delete(frame.send_ack.client_msg_id); pending.resolve(frame.send_ack); }
              break;
            }
            case 'send_error': this._refused(call, frame.send_error); break;
            case 'sync_complete':
              this.connected = true; this._attempt = 0; this._streak = 0;
              this.instance = frame.sync_complete.instance;
              this._state('connected', `${this.instance} (${address})`);
              this.emit('connected', this.instance);
              break;
            case 'reconnect':
              this._state('moved', frame.reconnect.instance);
              call.cancel();
              settle({ address: frame.reconnect.address || null, immediate: true, reason: 'moved', ringVersion: frame.reconnect.ring_version });
              break;
            default: break;
          }
        };
        call.on('data', handle);
        call.on('error', (err) => {
          const details = errorDetails(err);
          if (details.code === grpc.status.FAILED_PRECONDITION && details.reason === 'WRONG_CHAT_SERVER') {
            this.redirects += 1;
            this._state('redirected', details.metadata.owner_address || '');
            settle({ address: details.metadata.owner_address || null, immediate: true, reason: 'redirected', ringVersion: details.metadata.ring_version || 0 });
          } else if (details.reason === 'TOKEN_EXPIRED') {
            this.client.refresh().then(() => settle({ address, immediate: true, reason: 'token refreshed', ringVersion: this._ringVersion }), reject);
          } else if ([grpc.status.UNAUTHENTICATED, grpc.status.PERMISSION_DENIED, grpc.status.INVALID_ARGUMENT].includes(details.code)) {
            const fatal = new FeedchatError(details);
            fatal.fatal = true;
            if (!settled) { settled = true; reject(fatal); }
          } else {
            settle({ address: null, immediate: false, reason: new FeedchatError(details).message });
          }
        });
        call.on('end', () => settle({ address: null, immediate: false, reason: 'stream ended' }));
      }, reject);
    });
  }

  _take(call, message) {
    if (message.inbox_cursor && cursorAfter(message.inbox_cursor, this.cursor)) {
      this.cursor = message.inbox_cursor;
      if (!this._ackDue) { // one ack of the newest cursor for everything taken this tick
        this._ackDue = true;
        setImmediate(() => {
          this._ackDue = false;
          if (this._call === call) call.write({ ack: { inbox_cursor: this.cursor } });
        });
      }
    }
    this._emitOnce(message);
  }

  _refused(call, error) {
    const pending = this._pending.get(error.client_msg_id);
    if (!pending) return;
    if (error.code === 'UNAVAILABLE' || error.code === 'RESOURCE_EXHAUSTED') {
      const d = error.retry_after || { seconds: 0, nanos: 0 };
      const delay = (Number(d.seconds) + d.nanos / 1e9) * 1000 || this.baseDelayMs;
      setTimeout(() => { if (this._call === call && this._pending.get(error.client_msg_id) === pending) call.write(pending.request); }, delay);
      return;
    }
    this._pending.delete(error.client_msg_id);
    pending.reject(new Error(`send refused: ${error.code} ${error.reason}: ${error.message}`));
  }

  /** Send; resolves with the SendAck. Re-sent with the same client_msg_id until acked. */
  send(channelId, text, clientMsgId = newId()) {
    return this._submit({ send: { client_msg_id: clientMsgId, channel_id: channelId, text } });
  }

  /**
   * Edit a message this user sent (an `edit` frame, re-sent and acked like a send): the
   * edit is an event with its own seq, delivered to every device as a message whose
   * `event` is {kind: 'EVENT_KIND_EDIT', target_message_id, target_seq, text}.
   */
  edit(channelId, messageId, text, clientMsgId = newId()) {
    return this._submit({ edit: { client_msg_id: clientMsgId, channel_id: channelId, message_id: messageId, text } });
  }

  /** Delete a message (a `delete` frame, re-sent and acked like a send; EVENT_KIND_DELETE). */
  delete(channelId, messageId, clientMsgId = newId()) {
    return this._submit({ delete: { client_msg_id: clientMsgId, channel_id: channelId, message_id: messageId } });
  }

  _submit(request) {
    const frame = Object.values(request)[0];
    return new Promise((resolve, reject) => {
      this._pending.set(frame.client_msg_id, { request, resolve, reject });
      const call = this._call;
      if (!call) return; // the next stream sends every pending request
      if (!request.send) { // an edit, delete or reaction: after the sends made before it
        this._flushSends(call);
        call.write(request);
        return;
      }
      this._unsent.push(request);
      if (this._unsent.length === 1) setImmediate(() => this._flushSends(call));
    });
  }

  /** Write the sends made since the last flush: one frame, or a send_batch of them. */
  _flushSends(call) {
    const requests = this._unsent;
    this._unsent = [];
    if (!call || this._call !== call) return; // a new stream re-sends every pending send
    for (const frame of sendFrames(requests)) call.write(frame);
  }

  /**
   * Mark a channel read up to `seq` (forward only on the server; the newest mark per channel
   * is sent again on every new stream).
   */
  markRead(channelId, seq) {
    const key = String(channelId);
    if (Number(seq) > Number(this._reads.get(key) || 0)) this._reads.set(key, seq);
    if (this._call) this._call.write({ read: { channel_id: channelId, seq } });
  }

  close() {
    this._closed = true;
    if (this._call) this._call.cancel();
    for (const pending of this._pending.values()) pending.reject(new Error('connection closed'));
    this._pending.clear();
  }
}

module.exports = { FeedchatClient, ChatConnection, ChatPoller, FeedchatError, services };
