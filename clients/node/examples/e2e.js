'use strict';
// End-to-end scenario run by tests/clients/test_node_e2e.py (and usable by hand):
// a Node user signs up, follows a Python user, reads a feed holding that user's post,
// posts once with a retried request id, then chats with them: sends one message, waits
// for the reply, edits the message sent, and sends one more that it then deletes.
//
// Input: one JSON argument {account, feed, router, username, password, peerUserId,
// expectPost, send, expectReply}. Output: one JSON object per line on stdout
// ({"event": "ready" | "feed" | "posted" | "sent" | "chat" | "edited" | "error", ...}); exit code 0 on success.

const { FeedchatClient } = require('../src');

function emit(event, fields = {}) {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}

async function main() {
  const cfg = JSON.parse(process.argv[2]);
  const client = new FeedchatClient({ account: cfg.account, feed: cfg.feed, router: cfg.router });
  const deadline = Date.now() + (cfg.timeoutMs || 20000);
  try {
    await client.signUp(cfg.username, cfg.password);
    emit('ready', { user_id: client.userId });

    await client.follow(cfg.peerUserId);
    let texts = [];
    while (!texts.includes(cfg.expectPost)) {
      if (Date.now() > deadline) throw new Error(`feed never showed ${JSON.stringify(cfg.expectPost)}: ${JSON.stringify(texts)}`);
      const page = await client.getFeed({ pageSize: 20 });
      texts = page.posts.filter((p) => p.author.user_id === cfg.peerUserId).map((p) => p.text);
      if (!texts.includes(cfg.expectPost)) await new Promise((r) => setTimeout(r, 100));
    }
    emit('feed', { texts });

    // A post retried with the same request id (as after a cut-off call) is stored once.
    const first = await client.post('node posts once', { requestId: 'node-e2e-post' });
    const retried = await client.post('node posts once', { requestId: 'node-e2e-post' });
    emit('posted', { first: first.post_id, retried: retried.post_id });

    const channel = await client.openDirect(cfg.peerUserId);
    // Start at a chat server that does not own this user, to exercise the redirect.
    const owner = await client.route(client.userId);
    const wrong = (await client.chatServers()).find((s) => s.address !== owner.address);
    const conn = client.connectChat('node-e2e', { address: wrong ? wrong.address : null });
    conn.on('state', (state, detail) => process.stderr.write(`chat ${state} ${detail}\n`));
    conn.on('error', (err) => { emit('error', { message: err.message }); process.exit(1); });
    const reply = conn.waitFor((m) => m.sender_id === cfg.peerUserId && m.text === cfg.expectReply,
      Math.max(1000, deadline - Date.now()));
    const ack = await conn.send(channel.channel_id, cfg.send);
    emit('sent', { message_id: ack.message_id, channel_id: ack.channel_id });
    const got = await reply;
    emit('chat', { received: got.text, sender_id: got.sender_id, channel_id: got.channel_id, instance: conn.instance, owner: owner.instance, redirects: conn.redirects });

    // Edit the message sent (an `edit` frame), then send one more and delete it (unary).
    const edit = await conn.edit(channel.channel_id, ack.message_id, `${cfg.send} (edited)`);
    const extra = await conn.send(channel.channel_id, 'soon deleted');
    const deleted = await client.deleteMessage(channel.channel_id, extra.message_id);
    emit('edited', { seq: edit.seq, deleted_seq: deleted.seq, deleted_id: extra.message_id });
    conn.close();
  } finally {
    client.close();
  }
}

main().then(() => process.exit(0), (err) => {
  emit('error', { message: String(err && err.message ? err.message : err) });
  process.exit(1);
});
