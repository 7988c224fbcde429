#!/usr/bin/env bash
# By hand, not a test: check staffvoice answers in the Microsoft 365 Agents Playground.
# Needs Node.js 20+ (npx) and the bot already running in anonymous mode on :3978 (README, "Run it
# in Teams"). Starts a headless Playground in a temp dir, types TEXT in its personal chat
# through the Playground's local HTTP API and waits for a bot reply containing EXPECTED.
# Usage: bench/playground_check.sh [TEXT] [EXPECTED]    (default: help, "What you can do here")
set -euo pipefail
TEXT=${1:-help}
EXPECT=${2:-What you can do here}
work=$(mktemp -d)
setsid bash -c "cd '$work' && TEAMSAPPTESTER_BROWSER=none exec npx -y @microsoft/m365agentsplayground" \
  >"$work/out" 2>&1 &
pg=$!
trap 'kill -- -$pg 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 120); do grep -q '^Listening on' "$work/out" && break; sleep 1; done
port=$(sed -n 's/^Listening on \([0-9]*\).*/\1/p' "$work/out" | head -1)
[ -n "$port" ] || { cat "$work/out"; echo "Playground did not start" >&2; exit 1; }
flag=$(node -e 'process.stdout.write(typeof WebSocket === "function" ? "" : "--experimental-websocket")')
PG="http://localhost:$port" TEXT="$TEXT" EXPECT="$EXPECT" node $flag --input-type=module -e '
const { PG, TEXT, EXPECT } = process.env;
const cfg = (await (await fetch(PG + "/_internal/v1/config")).json()).config;
const ws = new WebSocket(PG.replace("http", "ws") + "/_ws_conversation/v1/conversations/stream");
const done = new Promise((ok) => (ws.onmessage = (e) => {
  const m = JSON.parse(e.data).message || {};
  const card = JSON.stringify(m.attachments || m.text || "");
  if (m.from?.id === cfg.bot.id && card.includes(EXPECT)) ok(card);
}));
await new Promise((r) => (ws.onopen = r));
const r = await fetch(`${PG}/_conversation/v1/conversations/${cfg.personalChat.id}/messages`, {
  method: "POST", headers: { "content-type": "application/json" },
  body: JSON.stringify({ from: { id: cfg.currentUser.id }, text: TEXT, textFormat: "plain" }) });
if (!r.ok) { console.error("Playground refused the message:", r.status, await r.text()); process.exit(1); }
const card = await Promise.race([done, new Promise((r) => setTimeout(r, 20000, null))]);
if (!card) { console.error(`no bot reply containing "${EXPECT}" within 20 s`); process.exit(1); }
console.log(`OK: "${TEXT}" answered through the Playground:`, card.slice(0, 400));
process.exit(0);
'
