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

function loadAddon (): { addon?: OpensslAead, cipher: NoiseCipher } {
  // (for side-by-side measurements, and a way out should the native module misbehave)
  if (process.env.GOSYNC_NOISE_CIPHER === 'node') return { cipher: { name: 'node', detail: 'GOSYNC_NOISE_CIPHER=node' } }
  let addon: OpensslAead
  try {
    // built by `npm ci` (binding.gyp); from dist/src/node/ the repository root is three up
    addon = createRequire(import.meta.url)(fileURLToPath(new URL('../../../build/Release/openssl_aead.node', import.meta.url))) as OpensslAead
  } catch (err) {
    return { cipher: { name: 'node', detail: `native/openssl-aead.c not built (${(err as Error).message.split('\n')[0]})` } }
  }
  const ok = addon.available()
  if (ok !== true) return { cipher: { name: 'node', detail: ok } }
  // libcrypto may load and still not run the cipher (a FIPS-only or base-only provider
  // configuration fails only at the first use): one message both ways first, against noise's default
  const failed = selfTest(opensslCrypto(addon))
  if (failed != null) return { cipher: { name: 'node', detail: `the system's libcrypto (${addon.version()}) failed a self-test: ${failed}` } }
  return { addon, cipher: { name: 'system-openssl', detail: addon.version() } }
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
      let m: Uint8Array
      if (plaintext instanceof Uint8Array) {
        m = plaintext
      } else {
        // gathered into the output and encrypted in place
        let at = 0
        for (const part of plaintext) { out.set(part, at); at += part.byteLength }
        m = out.subarray(0, len)
      }
      aead.seal(out, m, ad.byteLength > 0 ? ad : null, nonce, k)
      return out
    },
    chaCha20Poly1305Decrypt (ciphertext, nonce, ad, k, dst) {
      if (ciphertext.byteLength < TAG_BYTES) throw new Error('Invalid chacha20poly1305 decryption: shorter than its tag')
      const len = ciphertext.byteLength - TAG_BYTES
      // noise hands a copy of the ciphertext (or its own bytes) as `dst`: decrypted in place
      const m = dst != null && dst.byteLength >= len ? dst.subarray(0, len) : Buffer.allocUnsafe(len)
      let c: Uint8Array
      if (ciphertext instanceof Uint8Array) {
        c = ciphertext.subarray(0, len)
      } else {
        // a message in several pieces: gathered into the output (no buffer of its own) and decrypted there
        let at = 0
        for (const part of ciphertext) {
          const take = Math.min(part.byteLength, len - at)
          if (take <= 0) break
          m.set(take === part.byteLength ? part : part.subarray(0, take), at)
          at += take
        }
        c = m
      }
      if (!aead.open(m, c, ciphertext.subarray(len), ad.byteLength > 0 ? ad : null, nonce, k)) throw new Error('Invalid chacha20poly1305 decryption')
      return m
    }
  }
}

const loaded = loadAddon()

/** The Noise crypto for this process: the system's cipher when it loads, else noise's default. */
export const noiseCrypto: ICryptoInterface = loaded.addon != null ? opensslCrypto(loaded.addon) : defaultCrypto
export const noiseCipher: NoiseCipher = loaded.cipher
