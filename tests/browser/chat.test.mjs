// The chat example (example/chat/index.html) in a real browser: Debian's
// /usr/bin/chromium, headless, driven by playwright-core (never a downloaded
// browser). Two pages log in, see each other, chat globally and in a channel,
// and one sees the other leave.
//
// Needs a running demo (router, gateway with STATIC_DIR = example/chat, backend):
// tests/integration/test_browser_chat.py starts one per backend and runs
//   CHAT_URL=http://127.0.0.1:PORT/ node --test tests/browser/chat.test.mjs
// Env: CHAT_URL (required), ROUTER_PORT (the router on 127.0.0.1: then the
// reconnect after a KICK is tested too), CHROMIUM (default /usr/bin/chromium),
// SCREENSHOT_DIR (where screenshots go on failure; default: a new temp dir).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import { chromium } from "playwright-core";

const URL_ = process.env.CHAT_URL;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const T = 15000; // per expectation

// Router KICK (type 4) of one session: u16 type | u16 slen | u32 len | SIDs.
function kick(port, sid) {
  return new Promise((resolve, reject) => {
    const hdr = Buffer.alloc(8);
    hdr.writeUInt16BE(4, 0);
    hdr.writeUInt16BE(sid.length, 2);
    hdr.writeUInt32BE(0, 4);
    const sock = net.connect(port, "127.0.0.1", () => sock.end(Buffer.concat([hdr, Buffer.from(sid)])));
    sock.on("close", resolve);
    sock.on("error", reject);
  });
}

async function launch() {
  const profile = mkdtempSync(join(tmpdir(), "fooking-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1100, height: 720 },
  });
  return { context, profile };
}

// A page with the chat open, logged in as name; JS errors are collected.
async function open(context, name, errors) {
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(`${name}: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") errors.push(`${name}: console: ${m.text()}`); });
  await page.goto(URL_);
  await page.locator("#conn-status.online").waitFor({ timeout: T });
  await page.fill("#login-name", name);
  await page.click("#login-btn");
  await page.locator("#login").waitFor({ state: "hidden", timeout: T });
  await page.locator(`#users li[data-name="${name}"]`).waitFor({ timeout: T });
  return page;
}

function user(page, name) {
  return page.locator(`#users li[data-name="${name}"]`);
}
function messages(page, channel, text) {
  return page.locator(`#pane-${channel} .msg .text`, { hasText: text });
}

async function send(page, text) {
  await page.fill("#msg-input", text);
  await page.press("#msg-input", "Enter");
}

test("two browsers chat through fooking", { timeout: 120000 }, async (t) => {
  assert.ok(URL_, "CHAT_URL is not set");
  const { context, profile } = await launch();
  const errors = [];
  const pages = {};
  t.after(async () => {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  });
  try {
    pages.alice = await open(context, "alice", errors);
    pages.bob = await open(context, "bob", errors);
    const { alice, bob } = pages;

    // Each sees the other in the user list.
    await user(alice, "bob").waitFor({ timeout: T });
    await user(bob, "alice").waitFor({ timeout: T });
    assert.equal(await alice.textContent("#online-count"), "2");
    // ... and alice saw bob arrive.
    await alice.locator("#pane-0 .notice", { hasText: "bob joined the chat" }).waitFor({ timeout: T });

    // A global message reaches both, with its sender; markup stays text.
    const hello = "hello <b>everyone</b> & 'all'";
    await send(alice, hello);
    for (const p of [alice, bob]) {
      await messages(p, 0, hello).waitFor({ timeout: T });
      const row = p.locator("#pane-0 .msg", { has: p.locator(".text", { hasText: hello }) });
      assert.equal(await row.locator(".name").textContent(), "alice");
      assert.match(await row.locator("time").textContent(), /\d/);
    }
    assert.equal(await bob.locator("#pane-0 .msg .text b").count(), 0, "user text was rendered as HTML");

    // bob joins channel 2; alice only looks at it.
    await bob.click('.room[data-channel="2"]');
    await bob.click("#join-btn");
    await bob.locator('.room[data-channel="2"] .tag:not([hidden])').waitFor({ timeout: T });
    await bob.locator("#msg-input:not([disabled])").waitFor({ timeout: T });
    await alice.click('.room[data-channel="2"]');
    await alice.locator("#join-btn:not([hidden])").waitFor({ timeout: T });

    const secret = "only for channel two";
    await send(bob, secret);
    await messages(bob, 2, secret).waitFor({ timeout: T });
    // A later global message from bob: once alice has it, a wrongly delivered
    // channel message would already be there too.
    await bob.click('.room[data-channel="0"]');
    await send(bob, "back in the lobby");
    // (alice is looking at channel 2: the lobby pane is hidden, the message is there.)
    await messages(alice, 0, "back in the lobby").waitFor({ state: "attached", timeout: T });
    assert.equal(await alice.locator('.room[data-channel="0"] .badge').textContent(), "1");
    assert.equal(await alice.locator(".msg .text", { hasText: secret }).count(), 0,
                 "alice got a channel-2 message without joining channel 2");
    // ... nor an unread count for channel 2.
    assert.equal(await alice.locator('.room[data-channel="2"] .badge').textContent(), "");

    // bob closes his page: alice sees him leave.
    await bob.close();
    delete pages.bob;
    await alice.click('.room[data-channel="0"]');
    await alice.locator("#pane-0 .notice", { hasText: "bob left the chat" }).waitFor({ timeout: T });
    await user(alice, "bob").waitFor({ state: "detached", timeout: T });
    assert.equal(await alice.textContent("#online-count"), "1");

    // The server drops alice (a router KICK): her page reconnects with back-off,
    // logs in again under the same name and re-joins the channel she was in.
    if (process.env.ROUTER_PORT) {
      await alice.click('.room[data-channel="3"]');
      await alice.click("#join-btn");
      await alice.locator('.room[data-channel="3"] .tag:not([hidden])').waitFor({ timeout: T });
      const oldId = await user(alice, "alice").getAttribute("data-id");
      await kick(Number(process.env.ROUTER_PORT), oldId);
      await alice.locator(`#users li[data-name="alice"]:not([data-id="${oldId}"])`).waitFor({ timeout: T });
      await alice.locator("#conn-status.online").waitFor({ timeout: T });
      await alice.locator('.room[data-channel="3"] .tag:not([hidden])').waitFor({ timeout: T });
      await alice.click('.room[data-channel="3"]');
      await send(alice, "still here");
      await messages(alice, 3, "still here").waitFor({ timeout: T });
      assert.equal(await alice.textContent("#online-count"), "1");
    }

    assert.deepEqual(errors, [], "JavaScript errors on the pages");
  } catch (e) {
    const dir = process.env.SCREENSHOT_DIR || mkdtempSync(join(tmpdir(), "fooking-chat-shots-"));
    mkdirSync(dir, { recursive: true });
    for (const [name, page] of Object.entries(pages)) {
      const path = join(dir, `chat-${name}.png`);
      try {
        await page.screenshot({ path, fullPage: true });
        console.error(`screenshot of ${name}'s page: ${path}`);
      } catch (err) {
        console.error(`no screenshot of ${name}'s page: ${err.message}`);
      }
    }
    if (errors.length) console.error("page errors:\n" + errors.join("\n"));
    throw e;
  }
});
