'use strict';
// Loads feedchat's protos (../../../protos) at runtime and decodes rich error details.

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', '..', 'protos');
const FILES = ['account', 'feed', 'presence', 'router', 'chat'].map(
  (svc) => `feedchat/${svc}/v1/${svc}.proto`,
);

/**
 * Load every feedchat service. Ids (uint64) come back as decimal strings: Snowflake ids
 * exceed 2^53, so a JS number would round them.
 * @param {string} [protoRoot] folder holding feedchat/<svc>/v1/<svc>.proto
 */
function loadServices(protoRoot = PROTO_ROOT) {
  const definition = protoLoader.loadSync(FILES, {
    includeDirs: [protoRoot],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition).feedchat;
  return {
    AccountService: pkg.account.v1.AccountService,
    FeedService: pkg.feed.v1.FeedService,
    PresenceService: pkg.presence.v1.PresenceService,
    RouterService: pkg.router.v1.RouterService,
    ChatService: pkg.chat.v1.ChatService,
  };
}

// google.rpc.Status / ErrorInfo / RetryInfo, enough to read feedchat's rich errors.
const rpcRoot = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: {
          nested: {
            Any: { fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } },
            Duration: { fields: { seconds: { type: 'int64', id: 1 }, nanos: { type: 'int32', id: 2 } } },
          },
        },
        rpc: {
          nested: {
            Status: {
              fields: {
                code: { type: 'int32', id: 1 },
                message: { type: 'string', id: 2 },
                details: { rule: 'repeated', type: 'google.protobuf.Any', id: 3 },
              },
            },
            ErrorInfo: {
              fields: {
                reason: { type: 'string', id: 1 },
                domain: { type: 'string', id: 2 },
                metadata: { keyType: 'string', type: 'string', id: 3 },
              },
            },
            RetryInfo: { fields: { retry_delay: { type: 'google.protobuf.Duration', id: 1 } } },
          },
        },
      },
    },
  },
});
const Status = rpcRoot.lookupType('google.rpc.Status');
const ErrorInfo = rpcRoot.lookupType('google.rpc.ErrorInfo');
const RetryInfo = rpcRoot.lookupType('google.rpc.RetryInfo');

/**
 * The rich details of a failed call: {code, message, reason, metadata, retryAfter}.
 * @param {import('@grpc/grpc-js').ServiceError} err
 */
function errorDetails(err) {
  const out = { code: err.code, message: err.details, reason: '', metadata: {}, retryAfter: null };
  const raw = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  if (!raw || raw.length === 0) return out;
  const status = Status.decode(raw[0]);
  for (const detail of status.details) {
    if (detail.type_url.endsWith('/google.rpc.ErrorInfo')) {
      const info = ErrorInfo.decode(detail.value);
      out.reason = info.reason;
      out.metadata = { ...info.metadata };
    } else if (detail.type_url.endsWith('/google.rpc.RetryInfo')) {
      const retry = RetryInfo.decode(detail.value);
      const d = retry.retry_delay || { seconds: 0, nanos: 0 };
      out.retryAfter = Number(d.seconds) + d.nanos / 1e9;
    }
  }
  return out;
}

module.exports = { loadServices, errorDetails, PROTO_ROOT };
