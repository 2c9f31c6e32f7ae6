import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'

/** Poly1305 tag bytes after each Noise message's ciphertext. */
const TAG_BYTES = 16

/** native/openssl-aead.c: ChaCha20-Poly1305 through the system's libcrypto. */
interface OpensslAead {
  /** `out` (plaintext length + 16) gets the ciphertext, then the tag; it may be the plaintext's own bytes */
  seal: (out: Uint8Array, plaintext: Uint8Array, ad: Uint8Array | null, nonce: Uint8Array, key: Uint8Array) => void
  /** whether `tag` matched; `out` (the ciphertext's length) may be the ciphertext's own bytes, and is wiped on a mismatch */
  open: (out: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array, ad: Uint8Array | null, nonce: Uint8Array, key: Uint8Array) => boolean
  /** true, or why the system's libcrypto cannot be used */
  available: () => true | string
  version: () => string
}

/** Which ChaCha20-Poly1305 carries this process's Noise sessions, and why not the faster one. */
export interface NoiseCipher {
  name: 'system-openssl' | 'node'
  /** the system libcrypto's version, or why Node's own cipher is used */
  detail: string
}

/** The system's cipher as noise's crypto, or why Node's is used. */
function load (): { crypto: ICryptoInterface, cipher: NoiseCipher } {
  // (for side-by-side measurements, and a way out should the native module misbehave)
  if (process.env.GOSYNC_NOISE_CIPHER === 'node') return { crypto: defaultCrypto, cipher: { name: 'node', detail: 'GOSYNC_NOISE_CIPHER=node' } }
  let addon: OpensslAead
  try {
    // built by `npm ci` (binding.gyp); from dist/src/node/ the repository root is three up
    addon = createRequire(import.meta.url)(fileURLToPath(new URL('../../../build/Release/openssl_aead.node', import.meta.url))) as OpensslAead
  } catch (err) {
    return { crypto: defaultCrypto, cipher: { name: 'node', detail: `native/openssl-aead.c not built (${(err as Error).message.split('\n')[0]})` } }
  }
  const ok = addon.available()
  if (ok !== true) return { crypto: defaultCrypto, cipher: { name: 'node', detail: ok } }
  // libcrypto may load and still not run the cipher (a FIPS-only or base-only provider
  // configuration fails only at the first use): one message both ways first, against noise's default
  const crypto = opensslCrypto(addon)
  const failed = selfTest(crypto)
  if (failed != null) return { crypto: defaultCrypto, cipher: { name: 'node', detail: `the system's libcrypto (${addon.version()}) failed a self-test: ${failed}` } }
  return { crypto, cipher: { name: 'system-openssl', detail: addon.version() } }
}

/** Why `crypto` does not seal and open as noise's default does, or undefined. */
function selfTest (crypto: ICryptoInterface): string | undefined {
  const key = new Uint8Array(32).map((_, i) => i + 1)
  const nonce = new Uint8Array(12).map((_, i) => 0x40 + i)
  const ad = new Uint8Array(12).map((_, i) => 0x50 + i)
  const plaintext = new Uint8Array(1500).map((_, i) => i * 7)
  try {
    const sealed = Buffer.from(crypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, key).subarray())
    const expected = Buffer.from(defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, key).subarray())
    if (!sealed.equals(expected)) return 'its ciphertext differs'
    const opened = crypto.chaCha20Poly1305Decrypt(expected, nonce, ad, key)
    if (!Buffer.from(opened.subarray()).equals(plaintext)) return 'it did not open what it sealed'
    return undefined
  } catch (err) {
    return (err as Error).message
  }
}

/** The first `into.byteLength` bytes of a list of pieces, copied into `into` (which is returned). */
function gather (pieces: Iterable<Uint8Array>, into: Uint8Array): Uint8Array {
  let at = 0
  for (const piece of pieces) {
    const take = Math.min(piece.byteLength, into.byteLength - at)
    if (take <= 0) break
    into.set(take === piece.byteLength ? piece : piece.subarray(0, take), at)
    at += take
  }
  return into
}

/**
 * ChaCha20-Poly1305 (RFC 8439, as Noise uses it) through the system's libcrypto, for the
 * transport's messages and the handshake's: the same bytes on the wire as noise's default.
 * Node 20's own OpenSSL runs it at about half the speed on the lab's CPU, and every relay
 * decrypts and re-encrypts all it forwards (docs/PERFORMANCE.md, "The Noise cipher").
 */
function opensslCrypto (aead: OpensslAead): ICryptoInterface {
  return {
    ...defaultCrypto,
    chaCha20Poly1305Encrypt (plaintext, nonce, ad, k) {
      const len = plaintext.byteLength
      const out = Buffer.allocUnsafe(len + TAG_BYTES)
      // a message in several pieces: gathered into the output and encrypted in place
      const m = plaintext instanceof Uint8Array ? plaintext : gather(plaintext, out.subarray(0, len))
      aead.seal(out, m, ad.byteLength > 0 ? ad : null, nonce, k)
      return out
    },
    chaCha20Poly1305Decrypt (ciphertext, nonce, ad, k, dst) {
      if (ciphertext.byteLength < TAG_BYTES) throw new Error('Invalid chacha20poly1305 decryption: shorter than its tag')
      const len = ciphertext.byteLength - TAG_BYTES
      // noise hands a copy of the ciphertext (or its own bytes) as `dst`: decrypted in place
      const m = dst != null && dst.byteLength >= len ? dst.subarray(0, len) : Buffer.allocUnsafe(len)
      // a message in several pieces: its ciphertext gathered into the output (no buffer of its own) and decrypted there
      const c = ciphertext instanceof Uint8Array ? ciphertext.subarray(0, len) : gather(ciphertext, m)
      if (!aead.open(m, c, ciphertext.subarray(len), ad.byteLength > 0 ? ad : null, nonce, k)) throw new Error('Invalid chacha20poly1305 decryption')
      return m
    }
  }
}

/** The Noise crypto for this process (the system's cipher when it loads and passes its self-test, else noise's default), and which it is. */
export const { crypto: noiseCrypto, cipher: noiseCipher } = load()
