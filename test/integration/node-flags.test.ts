// The daemon's V8 heap flags live on the CLI's first line (`#!/usr/bin/env -S -u VAR node FLAGS`):
// run as a command, node gets them (and not NODE_EXTRA_CA_CERTS, a CA bundle node 20 would parse
// at every start for TLS that gosync never uses); run by plain `node`, the daemon says what is missing.
// The lab reads the same line, so every daemon in the tests and the benchmark runs as users run it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { CLI_PATH, NODE_FLAGS, UNSET_ENV, makeTempRoot, type TempRoot } from '../lab/hosts.js';

/** Start a daemon with `argv`, wait for `ready`; returns its stderr so far and its node's command line and environment. */
async function daemonOnce(argv: string[], home: string): Promise<{ stderr: string; cmdline: string[]; environ: string[] }> {
  const child = spawn(argv[0]!, [...argv.slice(1), 'daemon', '--home', home, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_EXTRA_CA_CERTS: '/nonexistent/gosync-test-ca.pem' },
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  try {
    const lines = createInterface({ input: child.stdout! });
    const ready = (async () => {
      for await (const line of lines) if (line.trim() === 'ready') return true;
      return false;
    })();
    const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 20_000).unref());
    assert.ok(await Promise.race([ready, timeout]), `daemon did not print ready; stderr:\n${stderr}`);
    const cmdline = fs.readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    const environ = fs.readFileSync(`/proc/${child.pid}/environ`, 'utf8').split('\0').filter(Boolean);
    return { stderr, cmdline, environ };
  } finally {
    child.kill('SIGINT');
    if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
  }
}

describe('node flags of the daemon', () => {
  let tmp: TempRoot;
  before(async () => { tmp = await makeTempRoot('gosync-flags-'); });
  after(async () => { await tmp?.cleanup(); });

  test('the CLI names its heap flags on its first line, and the lab uses them', () => {
    const first = fs.readFileSync(CLI_PATH, 'utf8').split('\n', 1)[0];
    assert.match(first!, /^#!\/usr\/bin\/env -S -u NODE_EXTRA_CA_CERTS node /);
    assert.deepEqual(UNSET_ENV, ['NODE_EXTRA_CA_CERTS']);
    assert.ok(NODE_FLAGS.includes('--initial-old-space-size=64'), `NODE_FLAGS = ${JSON.stringify(NODE_FLAGS)}`);
    assert.ok(NODE_FLAGS.includes('--max-semi-space-size=2'), `NODE_FLAGS = ${JSON.stringify(NODE_FLAGS)}`);
  });

  test('run as a command, node gets the flags but not NODE_EXTRA_CA_CERTS, and the daemon says nothing about them', { skip: process.platform !== 'linux' && 'needs /proc' }, async () => {
    assert.ok((fs.statSync(CLI_PATH).mode & 0o111) !== 0, 'npm run build makes the CLI executable');
    const { stderr, cmdline, environ } = await daemonOnce([CLI_PATH], path.join(tmp.path, 'as-command'));
    for (const f of NODE_FLAGS) assert.ok(cmdline.includes(f), `node's command line ${JSON.stringify(cmdline)} lacks ${f}`);
    assert.ok(!environ.some((e) => e.startsWith('NODE_EXTRA_CA_CERTS=')), "the first line's env -u removed NODE_EXTRA_CA_CERTS");
    assert.doesNotMatch(stderr, /started without --initial-old-space-size/);
  });

  test('run by plain node, the daemon notes the missing flag', { skip: process.platform !== 'linux' && 'needs /proc' }, async () => {
    const { stderr, environ } = await daemonOnce([process.execPath, CLI_PATH], path.join(tmp.path, 'plain-node'));
    assert.ok(environ.includes('NODE_EXTRA_CA_CERTS=/nonexistent/gosync-test-ca.pem'), 'plain node keeps the variable (the check above can fail)');
    assert.match(stderr, /note: node was started without --initial-old-space-size=64/);
  });
});
