// The home's memory of laggards: recent ones only, expired ones dropped, a bad file is no failure.
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LAGGARD_MEMORY_MS, LaggardMemory } from '../../src/home/laggards.js';

describe('LaggardMemory', () => {
  let home: string;
  before(async () => { home = await fsp.mkdtemp(path.join(os.tmpdir(), 'gosync-laggards-')); });
  after(async () => { await fsp.rm(home, { recursive: true, force: true }); });

  test('remembers peers for LAGGARD_MEMORY_MS, then forgets them', async () => {
    let now = 1_000_000_000_000;
    const m = new LaggardMemory(home, () => now);
    assert.deepEqual([...await m.recent()], [], 'no file: nobody');
    await m.remember(['P1']);
    now += 1000;
    await m.remember(['P2']);
    assert.deepEqual([...await m.recent()].sort(), ['P1', 'P2']);
    now += LAGGARD_MEMORY_MS - 500;
    assert.deepEqual([...await m.recent()], ['P2'], 'P1 expired');
    await m.remember(['P3']);
    const doc = JSON.parse(await fsp.readFile(path.join(home, 'laggards.json'), 'utf8'));
    assert.deepEqual(Object.keys(doc).sort(), ['P2', 'P3'], 'expired entries are dropped on write');
    const st = await fsp.stat(path.join(home, 'laggards.json'));
    assert.equal(st.mode & 0o777, 0o600);
    assert.deepEqual((await fsp.readdir(home)).filter(n => n.endsWith('.tmp')), [], 'no temp file left');
  });

  test('a file that is not JSON, or holds junk, counts as empty', async () => {
    const m = new LaggardMemory(home, () => 5);
    for (const bad of ['{not json', '[1,2]', 'null', '{"P":"yesterday","Q":null}']) {
      await fsp.writeFile(path.join(home, 'laggards.json'), bad);
      assert.deepEqual([...await m.recent()], [], bad);
    }
    await m.remember(['Z']);
    assert.deepEqual([...await m.recent()], ['Z']);
  });

  test('a time in the future is not trusted', async () => {
    await fsp.writeFile(path.join(home, 'laggards.json'), JSON.stringify({ F: 10_000 }));
    assert.deepEqual([...await new LaggardMemory(home, () => 5).recent()], []);
  });
});
