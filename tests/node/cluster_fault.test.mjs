// Redis goes away under a running cluster and comes back (issue 5): both
// nodes stay up, each keeps delivering to its own clients the whole time,
// and traffic between the nodes resumes by itself, without a restart. The
// test runs its own redis-server so it can kill it.

import assert from "node:assert/strict";
import { test } from "node:test";
import * as api from "./helpers/api.mjs";
import { ack, connectAs, Recorder, sleep } from "./helpers/client.mjs";
import { RedisProcess, withCluster } from "./helpers/cluster.mjs";

const T = { timeout: 120_000 };

const send = (socket, conv, text) =>
  ack(socket, "send_message", { conversationId: conv.id, text, clientId: api.randomId("c") }).then((r) => {
    assert.equal(r.ok, true, JSON.stringify(r));
    return r.message;
  });

/** Sends from `from` every 250 ms until `rec` has a message sent in this call; bounded. */
async function untilDelivered(from, conv, rec, label, ms = 20_000) {
  const deadline = Date.now() + ms;
  for (let i = 0; Date.now() < deadline; i++) {
    const text = `${label} ${i}`;
    await send(from, conv, text);
    await sleep(250);
    if (rec.payloads("new_message").some((m) => m.text.startsWith(label))) return Date.now();
  }
  throw new Error(`no "${label}" message crossed between the nodes within ${ms} ms`);
}

test("Redis stopped mid-traffic and started again: local delivery never stops, cross-node delivery comes back", T, async () => {
  const redis = await new RedisProcess().start();
  try {
    await withCluster({ redisUrl: redis.url }, async ({ nodes: [n1, n2] }) => {
      const ann = await api.externalUser(n1.url, "Ann");
      const bob = await api.externalUser(n1.url, "Bob");
      const cat = await api.externalUser(n1.url, "Cat");
      const conv = await api.createConversation(n1.url, ann, [bob, cat]);
      const a = await connectAs(n1, ann); // node 1
      const c = await connectAs(n1, cat); // node 1, beside Ann
      const b = await connectAs(n2, bob); // node 2
      for (const s of [a, b, c]) {
        const res = await ack(s, "conversation:join", { conversationId: conv.id });
        assert.equal(res.ok, true, JSON.stringify(res));
      }
      const rb = new Recorder(b, ["new_message"]);
      const rc = new Recorder(c, ["new_message"]);
      await send(a, conv, "before");
      await rb.count("new_message", 1);
      await rc.count("new_message", 1);

      // Redis dies. Node 1 keeps delivering Ann's messages to Cat at once.
      await redis.stop();
      for (let i = 0; i < 10; i++) {
        const sent = await send(a, conv, `during ${i}`);
        await rc.until((r) => r.payloads("new_message").some((m) => m.id === sent.id), 3_000, `local delivery of "during ${i}"`);
        await sleep(100);
      }
      for (const n of [n1, n2]) {
        const health = await fetch(`${n.url}/health`);
        assert.equal(health.status, 200, "the node stays up");
        assert.equal(n.child.exitCode, null);
      }

      // Redis is back on the same address: the bridges reconnect, resubscribe,
      // and messages cross in both directions again.
      await redis.start();
      await untilDelivered(a, conv, rb, "node1->node2 after");
      const ra = new Recorder(a, ["new_message"]);
      await untilDelivered(b, conv, ra, "node2->node1 after");
    });
  } finally {
    await redis.stop();
  }
});
