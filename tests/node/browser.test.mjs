// The test page in a real browser: headless Debian Chromium driven by
// playwright-core, against the real huddle binary. Two browser contexts are
// two users (Ada and Bob); a second tab of Ada's context is her second
// device. Everything happens through the page, as a person would do it:
// a chat message typed by Ada appears for Bob (with typing and read
// receipts), a task Ada moves moves on Bob's board, and a file Ada drops
// shows its progress and completion in her second tab, then is shared into
// the conversation and downloaded by Bob. Screenshots go to
// artifacts/screenshots/.

import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { withServer } from "./helpers/server.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const SHOTS = path.resolve(here, "..", "..", "artifacts", "screenshots");
const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const WAIT = { timeout: 15_000 };

async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/** Registers through the sign-in form and waits for the socket to connect. */
async function register(page, url, name) {
  await page.goto(url);
  await page.fill("#auth-form input[name=email]", `${name.toLowerCase()}-${Date.now()}@example.com`);
  await page.fill("#auth-form input[name=password]", "correct horse battery");
  await page.fill("#auth-form input[name=name]", name);
  await page.click("#auth-form button[value=register]");
  await page.locator("#conn", { hasText: "connected" }).waitFor(WAIT);
  return page.evaluate(() => JSON.parse(localStorage.getItem("huddle.user")));
}

/** Submits the one-input form `form` with `value`. */
async function submit(page, form, value) {
  await page.fill(`${form} input`, value);
  await page.press(`${form} input`, "Enter");
}

test("the test page, in Chromium: chat, task board and uploads across users and tabs", { timeout: 120_000 }, async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing (apt-get install chromium)`);
  await withServer(async (server) => {
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
    server.cleanups.push(() => browser.close());
    const viewport = { width: 1440, height: 1000 };
    const adaCtx = await browser.newContext({ viewport });
    const bobCtx = await browser.newContext({ viewport, acceptDownloads: true });
    const ada = await adaCtx.newPage();
    const bob = await bobCtx.newPage();
    for (const [who, page] of [["ada", ada], ["bob", bob]]) {
      page.on("pageerror", (err) => console.error(`[${who}] page error: ${err.message}`));
    }

    // Sign up; the transport starts as polling and upgrades to WebSocket.
    await register(ada, server.url, "Ada");
    const bobUser = await register(bob, server.url, "Bob");
    await ada.locator("#transport", { hasText: "websocket" }).waitFor(WAIT);
    const log = await ada.locator("#log").innerText();
    assert.match(log, /transport: polling/);
    assert.match(log, /upgraded to websocket/);

    // Ada builds a workspace with a project, adds Bob, opens a chat with him.
    await submit(ada, "#ws-form", "Demo");
    await submit(ada, "#project-form", "Launch");
    await ada.locator("#board .column").first().waitFor(WAIT);
    await submit(ada, "#member-form", bobUser.email);
    await ada.locator("#member-list li", { hasText: "Bob" }).waitFor(WAIT);
    await ada.locator(`#conv-form option[value="${bobUser.id}"]`).waitFor({ state: "attached", ...WAIT });
    await ada.click("#conv-form button");
    await ada.locator("#chat-form").waitFor(WAIT);

    // Bob sees the workspace, the project and the conversation.
    await bob.click("#ws-refresh");
    await bob.click("#ws-list li:has-text('Demo')");
    await bob.click("#project-list li:has-text('Launch')");
    await bob.locator("#board .column").first().waitFor(WAIT);
    await bob.click("#conv-refresh");
    await bob.click("#conv-list li:has-text('Ada')");
    await bob.locator("#chat-form").waitFor(WAIT);

    // Chat: typing shows for Bob, the message arrives, Ada sees it read.
    await ada.locator("#chat-form input").pressSequentially("Hello Bob", { delay: 30 });
    await bob.locator("#chat-typing", { hasText: "Ada is typing" }).waitFor(WAIT);
    await ada.press("#chat-form input", "Enter");
    await bob.locator("#messages li", { hasText: "Hello Bob" }).waitFor(WAIT);
    await ada.locator("#messages .receipt", { hasText: "Seen by Bob" }).waitFor(WAIT);

    // Task board: Ada creates a task and moves it; Bob's board follows.
    await ada.fill("#task-form input[name=title]", "Write the docs");
    await ada.press("#task-form input[name=title]", "Enter");
    await bob.locator(".column[data-status=todo] .task", { hasText: "Write the docs" }).waitFor(WAIT);
    await ada.locator(".task", { hasText: "Write the docs" }).locator("button[title='Move to In progress']").click();
    await bob.locator(".column[data-status=in_progress] .task", { hasText: "Write the docs" }).waitFor(WAIT);
    assert.equal(await bob.locator(".column[data-status=todo] .task").count(), 0);
    await shot(ada, "1-ada-chat-and-board");
    await shot(bob, "2-bob-chat-and-board");

    // Uploads: Ada's second tab watches the upload her first tab makes.
    const ada2 = await adaCtx.newPage();
    ada2.on("pageerror", (err) => console.error(`[ada2] page error: ${err.message}`));
    await ada2.goto(server.url);
    await ada2.locator("#conn", { hasText: "connected" }).waitFor(WAIT);
    await ada2.evaluate(() => {
      // Record every progress value the row shows, however briefly.
      window.seenProgress = [];
      new MutationObserver(() => {
        for (const row of document.querySelectorAll("#uploads li")) window.seenProgress.push(Number(row.dataset.progress || 0));
      }).observe(document.querySelector("#uploads"), { subtree: true, attributes: true, childList: true });
    });
    const size = 3 * 1024 * 1024;
    // Drop a file on the drop zone, as a drag from the desktop would.
    await ada.evaluate((n) => {
      const line = "huddle uploads in chunks, resumably.\n";
      const file = new File([line.repeat(Math.ceil(n / line.length)).slice(0, n)], "notes.txt", { type: "text/plain", lastModified: 1 });
      const dt = new DataTransfer();
      dt.items.add(file);
      document.querySelector("#drop-zone").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, size);
    const row2 = ada2.locator("#uploads li.done");
    await row2.waitFor(WAIT);
    await ada.locator("#uploads li.done", { hasText: "notes.txt" }).waitFor(WAIT);
    assert.match(await row2.innerText(), /completed/);
    const seen = await ada2.evaluate(() => window.seenProgress);
    assert.ok(seen.some((p) => p > 0 && p < 100), `the second tab saw progress before completion (${seen.join(",")})`);
    await shot(ada2, "3-ada-second-tab-upload");

    // Share it into the conversation; Bob downloads it.
    await ada.locator("#uploads li.done button", { hasText: "share to chat" }).click();
    const fileMsg = bob.locator("#messages li", { hasText: "notes.txt" });
    await fileMsg.waitFor(WAIT);
    const [download] = await Promise.all([bob.waitForEvent("download", WAIT), fileMsg.locator("button", { hasText: "download" }).click()]);
    const saved = await download.path();
    assert.equal(fs.statSync(saved).size, size);
    await shot(bob, "4-bob-file-shared");
  });
});
