'use strict';
// End-to-end scenario of the unary chat path, run by tests/clients/test_node_e2e.py: a
// Node user chats with unary calls only (PollInbox long polls + SendMessage), starting
// its polls at a chat server that does not own it (so it follows the redirect), and
// reads its message statistics.
//
// Input: one JSON argument {account, feed, router, username, password, peerUserId,
// expect, reply}. Output: JSON lines on stdout ({"event": "ready" | "polling" | "chat" |
// "stats" | "error", ...}); exit code 0 on success.

const { FeedchatClient } = require('../src');

function emit(event, fields = {}) {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}

async function main() {
  const cfg = JSON.parse(process.argv[2]);
  const client = new FeedchatClient({ account: cfg.account, feed: cfg.feed, router: cfg.router });
  try {
    await client.signUp(cfg.username, cfg.password);
    const channel = await client.openDirect(cfg.peerUserId);
    const owner = await client.route(client.userId);
    const wrong = (await client.chatServers()).find((s) => s.address !== owner.address);
    const poller = client.pollChat('node-poll', { address: wrong ? wrong.address : null, waitSeconds: 20 });
    poller.on('state', (state, detail) => process.stderr.write(`poll ${state} ${detail}\n`));
    poller.on('error', (err) => { emit('error', { message: err.message }); process.exit(1); });
    const got = poller.waitFor((m) => m.sender_id === cfg.peerUserId && m.text === cfg.expect, 20000);
    emit('ready', { user_id: client.userId, channel_id: channel.channel_id });
    const message = await got;
    const ack = await poller.send(channel.channel_id, cfg.reply);
    const again = await poller.send(channel.channel_id, cfg.reply, ack.client_msg_id);
    emit('chat', {
      received: message.text, sender_id: message.sender_id, message_id: ack.message_id,
      duplicate: again.duplicate, same_id: again.message_id === ack.message_id,
      instance: poller.instance, owner: owner.instance, redirects: poller.redirects,
    });
    const stats = await client.messageStats(channel.channel_id, { bucket: 'minute' });
    emit('stats', { total: stats.total, buckets: stats.counts.length });
    poller.close();
  } finally {
    client.close();
  }
}

main().then(() => process.exit(0), (err) => {
  emit('error', { message: String(err && err.message ? err.message : err) });
  process.exit(1);
});
