// End-to-end test of the browser chat page in real headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core): two pages in one room exchange messages and see each other in the presence list; when the
// binary has `fulmar chat`, a terminal participant joins the same room too. A screenshot is saved to
// tests/browser/artifacts/. Run through scripts/test.sh, or: FULMAR_BIN=target/release/fulmar npm test
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..', '..');
const FULMAR_BIN = process.env.FULMAR_BIN || join(ROOT, 'target', 'release', 'fulmar');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const ARTIFACTS = join(HERE, 'artifacts');
/** Bound for one awaited event; generous for slow CI, never waited in a passing run. */
const WAIT = Number(process.env.FULMAR_TEST_WAIT_MS || 15000);
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** A loopback port that was free a moment ago. */
function freePort() {
  return new Promise((ok, fail) => {
    const server = net.createServer();
    server.on('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

/** A child process whose output is collected, with a wait for a line matching a pattern. */
class Proc {
  constructor(argv, { stdin = 'ignore' } = {}) {
    this.argv = argv;
    this.output = '';
    this.child = spawn(argv[0], argv.slice(1), { stdio: [stdin, 'pipe', 'pipe'] });
    this.exited = new Promise((ok) => this.child.on('exit', (code, signal) => ok({ code, signal })));
    for (const stream of [this.child.stdout, this.child.stderr]) {
      stream.setEncoding('utf8');
      stream.on('data', (chunk) => { this.output += chunk; });
    }
  }

  async waitFor(pattern, what = String(pattern)) {
    const deadline = Date.now() + WAIT;
    while (!pattern.test(this.output)) {
      if (this.child.exitCode !== null) throw new Error(`${this.argv[1]} exited while waiting for ${what}:\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`${this.argv[1]}: no ${what} within ${WAIT} ms:\n${this.output}`);
      await new Promise((ok) => setTimeout(ok, 25)); // poll interval of a log reader, not synchronisation
    }
  }

  async stop(signal = 'SIGTERM') {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

function startBroker(tcpPort, wsPort) {
  return new Proc([FULMAR_BIN, 'serve', '--no-persistence', '--listen', `127.0.0.1:${tcpPort}`, '--listen-ws', `127.0.0.1:${wsPort}`]);
}

const hasChat = spawnSync(FULMAR_BIN, ['chat', '--help'], { stdio: 'ignore' }).status === 0;

let broker;
let browser;
let tcpPort;
let wsPort;
let userDataDir;
const pageErrors = [];

before(async () => {
  tcpPort = await freePort();
  wsPort = await freePort();
  broker = startBroker(tcpPort, wsPort);
  await broker.waitFor(/mqtt over websocket/, 'websocket listener');
  userDataDir = mkdtempSync(join(tmpdir(), 'fulmar-chromium-'));
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport: { width: 1100, height: 700 },
  });
  mkdirSync(ARTIFACTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  await broker?.stop();
});

/** Opens the chat page, joins `room` as `nick` and waits until connected. */
async function joinRoom(nick, room) {
  const page = await browser.newPage();
  page.on('pageerror', (error) => pageErrors.push(`${nick}: ${error.message}`));
  await page.goto(`http://127.0.0.1:${wsPort}/?room=${encodeURIComponent(room)}&nick=${encodeURIComponent(nick)}`);
  await page.click('#join');
  await page.locator('#status[data-state="connected"]').waitFor({ timeout: WAIT });
  assert.equal(await page.locator('#join-form').isVisible(), false, 'the join form stays visible after joining');
  return page;
}

const member = (page, nick) => page.locator(`#members li[data-nick="${nick}"]`);
const message = (page, text) => page.locator('#messages .message', { hasText: text });

async function say(page, text) {
  await page.fill('#message', text);
  await page.click('#send');
  // Our own message is shown at once, then confirmed by the broker's PUBACK.
  await page.locator('#messages .message.own:not(.pending)', { hasText: text }).waitFor({ timeout: WAIT });
}

test('the vendored MQTT.js is the locked npm package', () => {
  const require = createRequire(import.meta.url);
  const fromNpm = readFileSync(join(dirname(require.resolve('mqtt/package.json')), 'dist', 'mqtt.min.js'));
  const vendored = readFileSync(join(ROOT, 'crates', 'fulmar-server', 'assets', 'vendor', 'mqtt.min.js'));
  assert.ok(fromNpm.equals(vendored), 'crates/fulmar-server/assets/vendor/mqtt.min.js differs: run `npm run vendor-mqtt`');
});

test('browser pages and the terminal chat see each other and every message', async (t) => {
  const room = `e2e${Date.now() % 100000}`;
  const alice = await joinRoom('alice', room);
  const bob = await joinRoom('bob', room);

  // Presence: each page lists both members (retained presence for the earlier one, live for the later).
  for (const page of [alice, bob]) {
    await member(page, 'alice').waitFor({ timeout: WAIT });
    await member(page, 'bob').waitFor({ timeout: WAIT });
  }

  await say(alice, 'hello from alice');
  await message(bob, 'hello from alice').waitFor({ timeout: WAIT });
  await say(bob, 'hi alice, bob here');
  await message(alice, 'hi alice, bob here').waitFor({ timeout: WAIT });
  // No Local (or the id fallback): a sender sees its own message once, not echoed back.
  assert.equal(await message(alice, 'hello from alice').count(), 1);

  let term;
  if (hasChat) {
    term = new Proc([FULMAR_BIN, 'chat', '-h', '127.0.0.1', '-p', String(tcpPort), '--room', room, '--nick', 'term'],
      { stdin: 'pipe' });
    await term.waitFor(/joined room/, '"joined room"');
    for (const page of [alice, bob]) await member(page, 'term').waitFor({ timeout: WAIT });
    await say(alice, 'alice to the terminal');
    await term.waitFor(/<alice> alice to the terminal/, "alice's message");
    term.child.stdin.write('typed in a terminal\n');
    for (const page of [alice, bob]) await message(page, 'typed in a terminal').waitFor({ timeout: WAIT });
    assert.match(await message(bob, 'typed in a terminal').locator('.nick').textContent(), /term/);
  } else {
    t.diagnostic('`fulmar chat` is not in this binary: terminal participant skipped');
  }

  await alice.screenshot({ path: join(ARTIFACTS, 'chat-alice.png') });
  await bob.screenshot({ path: join(ARTIFACTS, 'chat-bob.png') });

  // A clean leave publishes the retained offline presence.
  await bob.click('#leave');
  await member(alice, 'bob').waitFor({ state: 'detached', timeout: WAIT });
  if (term) {
    // A lost connection: the broker publishes the will, the retained offline presence.
    await term.stop('SIGKILL');
    await member(alice, 'term').waitFor({ state: 'detached', timeout: WAIT });
  }
  await bob.close();
  await alice.close();
  assert.deepEqual(pageErrors, []);
});

test('the page reconnects by itself when the broker restarts', async () => {
  const page = await joinRoom('carol', `rc${Date.now() % 100000}`);
  await broker.stop();
  await page.locator('#status:not([data-state="connected"])').waitFor({ timeout: WAIT });
  broker = startBroker(tcpPort, wsPort);
  await broker.waitFor(/mqtt over websocket/, 'websocket listener after restart');
  await page.locator('#status[data-state="connected"]').waitFor({ timeout: WAIT });
  await member(page, 'carol').waitFor({ timeout: WAIT });
  await say(page, 'back again');
  await page.screenshot({ path: join(ARTIFACTS, 'chat-reconnected.png') });
  await page.close();
  assert.deepEqual(pageErrors, []);
});
