import { createRequire } from 'node:module'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'

/** Poly1305 tag bytes after each Noise message's ciphertext. */
const TAG_BYTES = 16

/** native/openssl-aead.c: ChaCha20-Poly1305 through the system's libcrypto. */
interface OpensslAead {
  /** `out` (plaintext length + 16) gets the ciphertext, then the tag; it may be the plaintext's own bytes */
  seal: (out: Uint8Array, plaintext: Uint8Array, ad: Uint8Array | null, nonce: Uint8Array, key: Uint8Array) => void
  /** whether the tag matched; `out` (ciphertext length − 16) may be the ciphertext's own bytes, and is wiped on a mismatch */
  open: (out: Uint8Array, ciphertext: Uint8Array, ad: Uint8Array | null, nonce: Uint8Array, key: Uint8Array) => boolean
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
    addon = createRequire(import.meta.url)(new URL('../../../build/Release/openssl_aead.node', import.meta.url).pathname) as OpensslAead
  } catch (err) {
    return { cipher: { name: 'node', detail: `native/openssl-aead.c not built (${(err as Error).message.split('\n')[0]})` } }
  }
  const ok = addon.available()
  if (ok !== true) return { cipher: { name: 'node', detail: ok } }
  return { addon, cipher: { name: 'system-openssl', detail: addon.version() } }
}

/** What noise hands to the cipher: one buffer, or a list of them (noise's own uint8arraylist). */
type Bytes = Parameters<ICryptoInterface['chaCha20Poly1305Decrypt']>[0]

/** A Noise message's bytes in one piece (a list is copied, as Node's cipher would too). */
function contiguous (data: Bytes): Uint8Array {
  return data instanceof Uint8Array ? data : data.subarray()
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
      const c = contiguous(ciphertext)
      if (c.byteLength < TAG_BYTES) throw new Error('Invalid chacha20poly1305 decryption: shorter than its tag')
      const len = c.byteLength - TAG_BYTES
      // noise hands the front of the ciphertext itself as `dst`: decrypted in place
      const m = dst != null && dst.byteLength >= len ? dst.subarray(0, len) : Buffer.allocUnsafe(len)
      if (!aead.open(m, c, ad.byteLength > 0 ? ad : null, nonce, k)) throw new Error('Invalid chacha20poly1305 decryption')
      return m
    }
  }
}

const loaded = loadAddon()

/** The Noise crypto for this process: the system's cipher when it loads, else noise's default. */
export const noiseCrypto: ICryptoInterface = loaded.addon != null ? opensslCrypto(loaded.addon) : defaultCrypto
export const noiseCipher: NoiseCipher = loaded.cipher
