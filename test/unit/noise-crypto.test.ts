// The Noise cipher through the system's OpenSSL must be byte for byte the one noise uses by
// default (RFC 8439 ChaCha20-Poly1305): peers with either one talk to each other.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { noiseCipher, noiseCrypto } from '../../src/node/noise-crypto.js'

const k = randomBytes(32)
const nonceOf = (n: number): Uint8Array => { const b = Buffer.alloc(12); b.writeUInt32LE(n, 4); return b }
/** uint8arraylist as noise's own copy of it types it */
type List = Parameters<typeof noiseCrypto.chaCha20Poly1305Encrypt>[0]
const flat = (b: Uint8Array | { subarray: () => Uint8Array }): Buffer => Buffer.from(b instanceof Uint8Array ? b : b.subarray())

test('the system cipher carries Noise on Linux (native/openssl-aead.c, built by npm ci)', { skip: process.platform === 'linux' && process.env.GOSYNC_NOISE_CIPHER == null ? false : 'Linux only' }, () => {
  assert.equal(noiseCipher.name, 'system-openssl', noiseCipher.detail)
  assert.notEqual(noiseCrypto.chaCha20Poly1305Encrypt, defaultCrypto.chaCha20Poly1305Encrypt)
})

test('same ciphertext and tag as the default, every size, with and without associated data', () => {
  for (const size of [0, 1, 15, 16, 17, 1199, 1200, 4096, 65519]) {
    for (const ad of [new Uint8Array(0), randomBytes(32)]) {
      const plain = randomBytes(size)
      const nonce = nonceOf(size)
      const ours = flat(noiseCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k))
      const theirs = flat(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k))
      assert.equal(ours.byteLength, size + 16)
      assert.ok(ours.equals(theirs), `size ${size}, ad ${ad.byteLength}`)
      // each one opens the other's
      assert.ok(flat(noiseCrypto.chaCha20Poly1305Decrypt(theirs, nonce, ad, k)).equals(plain))
      assert.ok(flat(defaultCrypto.chaCha20Poly1305Decrypt(Buffer.from(ours), nonce, ad, k)).equals(plain))
    }
  }
})

test('a list of buffers is encrypted as their concatenation; decryption in place into the ciphertext', () => {
  const parts = [randomBytes(3), randomBytes(70), randomBytes(5000)]
  const whole = Buffer.concat(parts)
  const nonce = nonceOf(7)
  const ad = new Uint8Array(0)
  const fromList = flat(noiseCrypto.chaCha20Poly1305Encrypt(new Uint8ArrayList(...parts) as unknown as List, nonce, ad, k))
  assert.ok(fromList.equals(flat(defaultCrypto.chaCha20Poly1305Encrypt(whole, nonce, ad, k))))
  // as noise's decrypter does: dst is the front of the ciphertext itself
  const wire = Buffer.from(fromList)
  const out = noiseCrypto.chaCha20Poly1305Decrypt(wire, nonce, ad, k, wire.subarray(0, wire.byteLength - 16))
  assert.ok(flat(out).equals(whole))
  assert.equal((out as Uint8Array).buffer, wire.buffer, 'decrypted in place')
  // a list of ciphertext pieces too
  const listed = new Uint8ArrayList(fromList.subarray(0, 10), fromList.subarray(10)) as unknown as List
  assert.ok(flat(noiseCrypto.chaCha20Poly1305Decrypt(listed, nonce, ad, k)).equals(whole))
  // as noise does for a message that came in pieces: dst is a fresh copy of the ciphertext
  const copy = Buffer.from(fromList.subarray(0, whole.byteLength))
  const intoCopy = noiseCrypto.chaCha20Poly1305Decrypt(new Uint8ArrayList(fromList.subarray(0, 10), fromList.subarray(10)) as unknown as List, nonce, ad, k, copy)
  assert.ok(flat(intoCopy).equals(whole))
  assert.equal((intoCopy as Uint8Array).buffer, copy.buffer, 'decrypted into dst')
  // and dst empty or short: a buffer of its own
  assert.ok(flat(noiseCrypto.chaCha20Poly1305Decrypt(new Uint8ArrayList(fromList) as unknown as List, nonce, ad, k, new Uint8Array(3))).equals(whole))
})

test('a changed byte, tag, nonce or associated data is refused, and nothing unauthenticated is decrypted', () => {
  const plain = randomBytes(2000)
  const nonce = nonceOf(1)
  const ad = randomBytes(32)
  const sealed = flat(noiseCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k))
  const cases: Array<[string, Buffer, Uint8Array, Uint8Array]> = []
  const flipped = Buffer.from(sealed); flipped[100] ^= 1; cases.push(['ciphertext', flipped, nonce, ad])
  const badTag = Buffer.from(sealed); badTag[badTag.length - 1] ^= 0x80; cases.push(['tag', badTag, nonce, ad])
  cases.push(['nonce', Buffer.from(sealed), nonceOf(2), ad])
  cases.push(['associated data', Buffer.from(sealed), nonce, randomBytes(32)])
  cases.push(['length', Buffer.from(sealed.subarray(0, 10)), nonce, ad])
  for (const [what, wire, n, a] of cases) {
    assert.throws(() => noiseCrypto.chaCha20Poly1305Decrypt(wire, n, a, k, wire.subarray(0, Math.max(0, wire.byteLength - 16))), Error, what)
    // (the output of a failed check is wiped; in place, that is the ciphertext)
    assert.ok(!wire.subarray(0, plain.byteLength).equals(plain), `${what}: decrypted although refused`)
  }
})

test('the native calls refuse wrong lengths and types instead of reading or writing past a buffer', { skip: noiseCipher.name === 'system-openssl' ? false : `not loaded: ${noiseCipher.detail}` }, async () => {
  const { createRequire } = await import('node:module')
  const aead = createRequire(import.meta.url)(fileURLToPath(new URL('../../../build/Release/openssl_aead.node', import.meta.url))) as {
    seal: (...a: unknown[]) => void
    open: (...a: unknown[]) => boolean
  }
  const key = randomBytes(32)
  const nonce = nonceOf(0)
  assert.throws(() => aead.seal(Buffer.alloc(10), Buffer.alloc(10), null, nonce, key), RangeError, 'out without room for the tag')
  assert.throws(() => aead.seal(Buffer.alloc(26), Buffer.alloc(10), null, nonce.subarray(0, 8), key), RangeError, 'short nonce')
  assert.throws(() => aead.seal(Buffer.alloc(26), Buffer.alloc(10), null, nonce, key.subarray(0, 16)), RangeError, 'short key')
  assert.throws(() => aead.open(Buffer.alloc(10), Buffer.alloc(10), Buffer.alloc(15), null, nonce, key), RangeError, 'a short tag')
  assert.throws(() => aead.open(Buffer.alloc(100), Buffer.alloc(20), Buffer.alloc(16), null, nonce, key), RangeError, 'out longer than the ciphertext')
  assert.throws(() => aead.open(Buffer.alloc(20), Buffer.alloc(20), Buffer.alloc(16), null, nonce), TypeError, 'open without a key')
  assert.throws(() => aead.seal('text', Buffer.alloc(10), null, nonce, key), TypeError, 'a string')
  assert.throws(() => aead.seal(new Uint16Array(13), Buffer.alloc(10), null, nonce, key), TypeError, 'not bytes')
  assert.throws(() => aead.seal(Buffer.alloc(26), Buffer.alloc(10), null, nonce), TypeError, 'missing key')
  assert.throws(() => aead.seal(null, null, null, nonce, key), TypeError, 'null bytes where only ad may be null')
  assert.throws(() => aead.open(Buffer.alloc(0), Buffer.alloc(0), null, null, nonce, key), TypeError, 'a null tag')
  // in place (the same first byte) is fine; a shifted overlap is refused
  const shared = Buffer.alloc(64)
  assert.throws(() => aead.seal(shared.subarray(1, 27), shared.subarray(0, 10), null, nonce, key), RangeError, 'out shifted over the plaintext')
  assert.throws(() => aead.open(shared.subarray(0, 10), shared.subarray(5, 15), Buffer.alloc(16), null, nonce, key), RangeError, 'out shifted over the ciphertext')
  aead.seal(shared.subarray(0, 26), shared.subarray(0, 10), null, nonce, key)
})

test('a libcrypto that loads but cannot run the cipher (a base-only provider configuration) leaves Noise on Node\'s cipher', { skip: noiseCipher.name === 'system-openssl' ? false : `not loaded: ${noiseCipher.detail}` }, async () => {
  const { mkdtemp, writeFile, rm } = await import('node:fs/promises')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const { spawnSync } = await import('node:child_process')
  const dir = await mkdtemp(join(tmpdir(), 'gosync-ossl-'))
  try {
    const conf = join(dir, 'base-only.cnf')
    await writeFile(conf, 'openssl_conf = openssl_init\n[openssl_init]\nproviders = provider_sect\n[provider_sect]\nbase = base_sect\n[base_sect]\nactivate = 1\n')
    const module = new URL('../../src/node/noise-crypto.js', import.meta.url).href
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(module)}); console.log(JSON.stringify(m.noiseCipher))`], { env: { ...process.env, OPENSSL_CONF: conf }, encoding: 'utf8', timeout: 30_000 })
    assert.equal(r.status, 0, r.stderr)
    const cipher = JSON.parse(r.stdout) as { name: string, detail: string }
    assert.equal(cipher.name, 'node', r.stdout)
    assert.match(cipher.detail, /failed a self-test/)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
