import * as varint from 'uint8-varint'
import { Uint8ArrayList } from 'uint8arraylist'
import type { Stream } from '@libp2p/interface'

/** Pieces of a write smaller than this are copied into one buffer (see writeFrames). */
const COALESCE_BELOW = 16 * 1024

/**
 * Length-prefixed frames (unsigned varint length, then the bytes: the same framing as
 * it-length-prefixed) over a libp2p v3 stream, with bounded reads.
 *
 * Why not @libp2p/utils lpStream: its byte buffer aborts the stream when more than its
 * limit arrives before it is read, and it never pauses the sender. Here the read side
 * pauses the muxer (yamux stops granting window) above a high-water mark, resumes below
 * it, and fails cleanly above a hard cap — mplex cannot pause, so protocols that move
 * bulk data add their own credit on top (see protocols/relay).
 */

export class FrameTooLargeError extends Error {
  override name = 'FrameTooLargeError'
}
export class UnexpectedEOFError extends Error {
  override name = 'UnexpectedEOFError'
}
export class StreamClosedError extends Error {
  override name = 'StreamClosedError'
}
export class ReadBufferOverflowError extends Error {
  override name = 'ReadBufferOverflowError'
}

/** Where readThrough hands the bytes of a frame that is still arriving. */
export interface PassThrough {
  /** whether frames of this kind (their first byte) are passed on as they arrive */
  accepts: (kind: number) => boolean
  onBytes: (pieces: Uint8Array[], bodyBytes: number) => void
}

/** Fewer bytes than this of an incomplete frame wait for more before they are passed on. */
const PASS_MIN_BYTES = 32 * 1024

/**
 * Limits for a stream that may carry only a small greeting, or nothing at all (a refused peer):
 * more than 64 KiB unread aborts it at once (no pause first, which would let the muxer hold more).
 */
export const GREETING_LIMITS: FramedStreamOptions = { maxFrameBytes: 4096, highWaterBytes: 64 * 1024, maxBufferBytes: 64 * 1024 }

export interface FramedStreamOptions {
  /** largest frame accepted; a longer length prefix fails the read */
  maxFrameBytes: number
  /** pause the muxer when this many bytes wait unread (default 4 × maxFrameBytes, at least 1 MiB) */
  highWaterBytes?: number
  /** abort when this many bytes wait unread (default 4 × highWater) */
  maxBufferBytes?: number
}

export class FramedStream {
  private readonly buf = new Uint8ArrayList()
  private waiter?: () => void
  private eof = false
  private error?: Error
  private pauseQueued = false
  /** bytes of the frame being read (prefix included) already handed to a PassThrough */
  private passed = 0
  private maxFrame = 0
  private highWater = 0
  private maxBuffer = 0

  constructor (readonly stream: Stream, opts: FramedStreamOptions) {
    this.setLimits(opts)
    stream.addEventListener('message', (evt) => {
      this.buf.append(evt.data)
      if (this.buf.byteLength > this.maxBuffer) {
        this.fail(new ReadBufferOverflowError(`peer sent ${this.buf.byteLength} unread bytes, limit ${this.maxBuffer}`))
        stream.abort(this.error!)
        return
      }
      if (this.buf.byteLength > this.highWater && !this.pauseQueued) {
        // pausing synchronously inside the handler is undone by resume(): defer it
        this.pauseQueued = true
        queueMicrotask(() => {
          this.pauseQueued = false
          if (this.buf.byteLength > this.highWater && stream.readStatus === 'readable') stream.pause()
        })
      }
      this.wake()
    })
    stream.addEventListener('remoteCloseWrite', () => { this.eof = true; this.wake() })
    stream.addEventListener('close', (evt) => {
      if (evt.error != null) this.fail(evt.error)
      else { this.eof = true; this.wake() }
    })
    if (stream.status !== 'open' || stream.remoteWriteStatus === 'closed') this.eof = true
  }

  /**
   * The limits from now on: a stream starts with small ones while it may only carry a greeting
   * (an untrusted peer's, or a relay parent's before it is accepted) and gets the protocol's own
   * once the peer may send more.
   */
  setLimits (opts: FramedStreamOptions): void {
    this.maxFrame = opts.maxFrameBytes
    this.highWater = opts.highWaterBytes ?? Math.max(4 * opts.maxFrameBytes, 1 << 20)
    this.maxBuffer = opts.maxBufferBytes ?? 4 * this.highWater
    this.stream.maxReadBufferLength = Math.max(this.stream.maxReadBufferLength, this.maxBuffer)
  }

  private fail (err: Error): void {
    this.error ??= err
    this.wake()
  }

  private wake (): void {
    const w = this.waiter
    this.waiter = undefined
    w?.()
  }

  /** Bytes received but not yet read. */
  get buffered (): number { return this.buf.byteLength }

  private async waitForData (signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => { this.waiter = undefined; reject(signal!.reason) }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.waiter = () => { signal?.removeEventListener('abort', onAbort); resolve() }
    })
  }

  private maybeResume (): void {
    if (this.stream.readStatus === 'paused' && this.buf.byteLength <= this.highWater / 2) this.stream.resume()
  }

  /** The next frame, or null at a clean end of stream between frames. */
  async read (signal?: AbortSignal): Promise<Uint8ArrayList | null> {
    return await this.next(undefined, signal)
  }

  /**
   * The next frame, like read(); but while a frame whose first byte `pass.accepts` is still
   * arriving, its bytes (length prefix first) are handed to `pass.onBytes` as they come, each
   * byte once, in order. A relay forwards them at once instead of one whole frame later per
   * hop. `bodyBytes` counts the frame's own bytes among them (the prefix excluded).
   * Bytes handed on count as handed on even if `onBytes` throws, and a frame begun here must be
   * finished here with the same `pass` (an aborted call may be repeated): read() would not hand
   * on its remaining bytes.
   */
  async readThrough (pass: PassThrough, signal?: AbortSignal): Promise<Uint8ArrayList | null> {
    return await this.next(pass, signal)
  }

  private async next (pass: PassThrough | undefined, signal?: AbortSignal): Promise<Uint8ArrayList | null> {
    for (;;) {
      if (this.buf.byteLength > 0) {
        let len: number | undefined
        let prefix = 0
        try {
          len = varint.decode(this.buf)
          prefix = varint.encodingLength(len)
        } catch {
          if (this.buf.byteLength >= 10) throw new FrameTooLargeError('malformed frame length')
        }
        if (len !== undefined) {
          if (len > this.maxFrame) {
            const err = new FrameTooLargeError(`frame of ${len} bytes exceeds the limit of ${this.maxFrame}`)
            this.stream.abort(err)
            throw err
          }
          const whole = this.buf.byteLength >= prefix + len
          if (pass != null && len > 0 && this.buf.byteLength > prefix && pass.accepts(this.buf.get(prefix))) {
            const upTo = Math.min(this.buf.byteLength, prefix + len)
            // a piece is passed on once it is worth a send, or when the frame is whole
            if (upTo > this.passed && (whole || upTo - this.passed >= PASS_MIN_BYTES)) {
              const body = upTo - Math.max(this.passed, prefix)
              const pieces = [...this.buf.sublist(this.passed, upTo)]
              this.passed = upTo
              pass.onBytes(pieces, body)
            }
          }
          if (whole) {
            const frame = this.buf.sublist(prefix, prefix + len)
            this.buf.consume(prefix + len)
            this.passed = 0
            this.maybeResume()
            return frame
          }
        }
      }
      if (this.error != null) throw this.error
      if (this.eof && this.stream.readBufferLength === 0) {
        if (this.buf.byteLength === 0) return null
        throw new UnexpectedEOFError(`stream ended inside a frame (${this.buf.byteLength} bytes pending)`)
      }
      if (this.stream.readStatus === 'paused') this.stream.resume()
      await this.waitForData(signal)
    }
  }

  /** Write one frame made of the given parts; waits for 'drain' when the muxer is full. */
  async write (parts: Uint8Array | Uint8Array[], signal?: AbortSignal): Promise<void> {
    await this.writeFrames([Array.isArray(parts) ? parts : [parts]], signal)
  }

  /** Write several frames with one send: one muxer frame and one encryption instead of many. */
  async writeFrames (frames: Uint8Array[][], signal?: AbortSignal): Promise<void> {
    const pieces: Uint8Array[] = []
    for (const parts of frames) {
      let len = 0
      for (const p of parts) len += p.byteLength
      pieces.push(varint.encode(len), ...parts)
    }
    await this.writeBytes(pieces, signal)
  }

  /** Write bytes that are already framed (e.g. passed on by readThrough) with one send. */
  async writeBytes (pieces: Uint8Array[], signal?: AbortSignal): Promise<void> {
    // Pieces below COALESCE_BELOW are copied together: the muxer and Noise handle a list
    // piece by piece (one cipher update per piece), and a batch of small files is mostly
    // tiny pieces (length prefixes, headers, file bodies). Large pieces go by reference.
    const list = new Uint8ArrayList()
    let small: Uint8Array[] = []
    let smallLen = 0
    const flushSmall = (): void => {
      if (smallLen === 0) return
      list.append(small.length === 1 ? small[0] : Buffer.concat(small, smallLen))
      small = []
      smallLen = 0
    }
    for (const p of pieces) {
      if (p.byteLength >= COALESCE_BELOW) {
        flushSmall()
        list.append(p)
      } else if (p.byteLength > 0) {
        small.push(p)
        smallLen += p.byteLength
      }
    }
    flushSmall()
    if (this.stream.status !== 'open' || this.stream.writeStatus !== 'writable') {
      throw this.error ?? new StreamClosedError('stream is closed for writing')
    }
    if (!this.stream.send(list)) await this.drained(signal)
  }

  private async drained (signal?: AbortSignal): Promise<void> {
    const stream = this.stream
    await new Promise<void>((resolve, reject) => {
      const cleanup = (): void => {
        stream.removeEventListener('drain', onDrain)
        stream.removeEventListener('close', onClose)
        signal?.removeEventListener('abort', onAbort)
      }
      const onDrain = (): void => { cleanup(); resolve() }
      const onClose = (evt: any): void => { cleanup(); reject(evt.error ?? new StreamClosedError('stream closed while writing')) }
      const onAbort = (): void => { cleanup(); reject(signal!.reason) }
      stream.addEventListener('drain', onDrain)
      stream.addEventListener('close', onClose)
      signal?.addEventListener('abort', onAbort)
    })
  }

  /** Close our write half; the remote reads to the end. */
  async closeWrite (): Promise<void> {
    if (this.stream.writeStatus === 'writable') await this.stream.close().catch(() => {})
  }

  abort (err: Error): void {
    this.stream.abort(err)
  }
}
