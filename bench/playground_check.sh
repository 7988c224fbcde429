#!/usr/bin/env bash
# By hand, not a test: check staffvoice answers in the Microsoft 365 Agents Playground.
# Needs Node.js 20+ (npx) and the bot already running in anonymous mode on :3978 (README, "Run it
# in Teams"). Starts a headless Playground in a temp dir and, in its personal chat:
#   1. types TEXT through the Playground's local HTTP API and waits for a reply containing
#      EXPECTED (default: help, "What you can do here");
#   2. pulse: types "pulse" as the change team would see it, or waits for a pulse question, and
#      taps its first answer; expects the card to move on ("Saved");
#   3. feedback: types "feedback", taps the card's "Open the form" button (a task/fetch invoke),
#      fills in the dialog and sends it (task/submit); expects the dialog to close and the chat
#      to say the feedback was sent, and the typed text to appear in no chat message;
#   4. broadcast: types "broadcast", fills in the compose dialog, expects the preview.
# Card taps and dialog invokes go to the bot's /api/messages directly, shaped as Teams sends
# them and addressed to the Playground's chat and connector, because the Playground's local API
# only takes typed text; the bot's answers are read back from the Playground's stream.
# Steps 2 and 4 need the Playground's user in the programme file (pulse audience; change team
# for broadcasts): `whoami` in the Playground shows who the bot thinks it is. A step that cannot
# run says why and is skipped (exit status 0 when every step that ran passed).
# Usage: bench/playground_check.sh [TEXT] [EXPECTED]
set -euo pipefail
TEXT=${1:-help}
EXPECT=${2:-What you can do here}
BOT=${BOT:-http://127.0.0.1:3978/api/messages}
work=$(mktemp -d)
setsid bash -c "cd '$work' && TEAMSAPPTESTER_BROWSER=none exec npx -y @microsoft/m365agentsplayground" \
  >"$work/out" 2>&1 &
pg=$!
trap 'kill -- -$pg 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 120); do grep -q '^Listening on' "$work/out" && break; sleep 1; done
port=$(sed -n 's/^Listening on \([0-9]*\).*/\1/p' "$work/out" | head -1)
[ -n "$port" ] || { cat "$work/out"; echo "Playground did not start" >&2; exit 1; }
flag=$(node -e 'process.stdout.write(typeof WebSocket === "function" ? "" : "--experimental-websocket")')
PG="http://localhost:$port" BOT="$BOT" TEXT="$TEXT" EXPECT="$EXPECT" node $flag --input-type=module -e '
const { PG, BOT, TEXT, EXPECT } = process.env;
const cfg = (await (await fetch(PG + "/_internal/v1/config")).json()).config;
const chat = cfg.personalChat.id;
const tenant = cfg.tenantId ?? cfg.tenant?.id ?? cfg.personalChat.tenantId;
const seen = [];  // every bot message from the Playground stream, oldest first
let waiters = [];
const ws = new WebSocket(PG.replace("http", "ws") + "/_ws_conversation/v1/conversations/stream");
ws.onmessage = (e) => {
  const m = JSON.parse(e.data).message || {};
  if (m.from?.id !== cfg.bot.id) return;
  seen.push(m);
  waiters = waiters.filter((w) => !w(m));
};
await new Promise((r) => (ws.onopen = r));
const text = (m) => JSON.stringify(m.attachments || m.text || "");
const waitFor = (pred, ms = 20000) => new Promise((ok) => {
  const t = setTimeout(() => ok(null), ms);
  waiters.push((m) => (pred(m) ? (clearTimeout(t), ok(m), true) : false));
});
const say = async (words) => {
  const r = await fetch(`${PG}/_conversation/v1/conversations/${chat}/messages`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ from: { id: cfg.currentUser.id }, text: words, textFormat: "plain" }) });
  if (!r.ok) throw new Error(`Playground refused the message: ${r.status} ${await r.text()}`);
};
const activity = (extra) => ({
  id: `check-${Date.now()}-${Math.random().toString(16).slice(2)}`,
  timestamp: new Date().toISOString(), channelId: "msteams", serviceUrl: `${PG}/_connector`,
  from: { id: cfg.currentUser.id, name: cfg.currentUser.name, aadObjectId: cfg.currentUser.aadObjectId },
  conversation: { id: chat, conversationType: "personal", tenantId: tenant },
  recipient: { id: cfg.bot.id, name: cfg.bot.name }, channelData: { tenant: { id: tenant } },
  locale: "en-GB", ...extra });
const toBot = async (a) => {
  const r = await fetch(BOT, { method: "POST", headers: { "content-type": "application/json" },
                               body: JSON.stringify(a) });
  const body = r.headers.get("content-length") === "0" ? null : await r.json().catch(() => null);
  if (r.status >= 300) throw new Error(`bot answered ${r.status} ${JSON.stringify(body)}`);
  return body;
};
const actions = (node, out = []) => {
  if (node && typeof node === "object") {
    if (node.type === "Action.Submit") out.push(node);
    for (const v of Object.values(node)) actions(v, out);
  }
  return out;
};
const button = (pred) => {
  for (const m of [...seen].reverse()) {
    const a = actions(m.attachments || []).find(pred);
    if (a) return [m, a];
  }
  return [null, null];
};
// Fill every input of a dialog card: given values, else the first choice / "false" / a word.
const fill = (card, values) => {
  const data = { ...actions(card).find((a) => a.data)?.data };
  const walk = (n) => {
    if (!n || typeof n !== "object") return;
    if (typeof n.type === "string" && n.type.startsWith("Input.") && n.id) {
      data[n.id] = values[n.id] ?? n.value ?? (n.type === "Input.ChoiceSet" ? (n.choices?.[0]?.value ?? "")
        : n.type === "Input.Toggle" ? "false" : n.type === "Input.Number" ? String(n.min ?? 0)
        : n.isRequired ? "check" : "");
    }
    Object.values(n).forEach(walk);
  };
  walk(card);
  return data;
};
const dialog = async (values, expect) => {
  const [msg, open] = button((a) => a.data?.msteams?.type === "task/fetch");
  if (!open) throw new Error("no Open the form button in the chat");
  const fetched = await toBot(activity({ type: "invoke", name: "task/fetch", replyToId: msg.id,
                                         value: { type: "task/fetch", data: open.data } }));
  const card = fetched?.task?.value?.card?.content;
  if (fetched?.task?.type !== "continue" || !card) throw new Error(`task/fetch answered ${JSON.stringify(fetched)}`);
  const got = waitFor((m) => text(m).includes(expect));
  const sent = await toBot(activity({ type: "invoke", name: "task/submit",
                                      value: { type: "task/submit", data: fill(card, values) } }));
  if (sent && sent.task?.type === "continue") {
    throw new Error(`the dialog stayed open: ${JSON.stringify(sent).slice(0, 400)}`);
  }
  return got;
};
let failed = 0;
const step = async (name, fn) => {
  try { console.log(`OK: ${name}:`, String(await fn()).slice(0, 300)); }
  catch (e) { if (e.skip) console.log(`SKIPPED: ${name}: ${e.message}`);
              else { failed += 1; console.error(`FAILED: ${name}: ${e.message}`); } }
};
const skip = (why) => Object.assign(new Error(why), { skip: true });

await step(`"${TEXT}" answered`, async () => {
  const got = waitFor((m) => text(m).includes(EXPECT));
  await say(TEXT);
  const m = await got;
  if (!m) throw new Error(`no bot reply containing "${EXPECT}" within 20 s`);
  return text(m);
});
await step("a pulse answer with one tap", async () => {
  let [, tap] = button((a) => a.data?.sv_kind === "action" && /^[0-9]+$/.test(a.title));
  if (!tap) {
    const q = waitFor((m) => actions(m.attachments || []).some((a) => /^[0-9]+$/.test(a.title)), 60000);
    if (!(await q)) throw skip("no pulse question reached the Playground user (is it in the audience, in working hours?)");
    [, tap] = button((a) => a.data?.sv_kind === "action" && /^[0-9]+$/.test(a.title));
  }
  const [card] = button((a) => a === tap);
  const moved = waitFor((m) => text(m).includes("Saved"));
  await toBot(activity({ type: "message", value: tap.data, replyToId: card.id }));
  const m = await moved;
  if (!m) throw new Error("the pulse card did not move on after the tap");
  return text(m);
});
await step("feedback in a dialog", async () => {
  const opener = waitFor((m) => actions(m.attachments || []).some((a) => a.data?.msteams?.type === "task/fetch"));
  await say("feedback");
  if (!(await opener)) throw new Error("no Open the form card after \"feedback\"");
  const words = `Playground check ${Date.now()}: the new recording template saves time.`;
  const done = await dialog({ text: words, replies: "false" }, "sent anonymously");
  if (!done) throw new Error("no thank-you in the chat after the dialog closed");
  if (seen.some((m) => text(m).includes(words))) throw new Error("the feedback text is in the chat");
  return text(done);
});
await step("a broadcast previewed from a dialog", async () => {
  const opener = waitFor((m) => text(m).includes("New broadcast") || text(m).includes("only the change team"));
  await say("broadcast");
  const m = await opener;
  if (!m) throw new Error("no answer to \"broadcast\"");
  if (text(m).includes("only the change team")) throw skip("the Playground user is not in the change team");
  const preview = await dialog({ title: "Playground check", text: "An early win, checked in the Playground.",
                                 audience: "everyone", when: "now", celebrate: "false" },
                               "Preview: only you can see this");
  if (!preview) throw new Error("no preview after the compose dialog");
  return text(preview);
});
process.exit(failed ? 1 : 0);
'
