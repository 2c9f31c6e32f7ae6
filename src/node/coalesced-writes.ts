import { Socket } from 'node:net'
import type { ConnectionEncrypter, MessageStream } from '@libp2p/interface'

/**
 * One socket write per send on a TCP connection, instead of one per piece.
 *
 * Noise hands the TCP connection each batch of encrypted messages as a list of pieces: per
 * message a 2-byte length, the ciphertext in as many pieces as the plaintext had (a yamux
 * header, then data chunks) and the 16-byte tag. @libp2p/tcp writes each piece with its own
 * `socket.write`: one syscall each, and with TCP_NODELAY often one small packet each. A relay
 * forwarding 64 MiB made ~4,600 socket writes per run to its child (traced with strace).
 * Corking the socket for the length of a send turns them into one `writev` (~200 per run).
 * The bytes on the wire are the same, so this changes nothing for the peer.
 *
 * The connection's class is not exported, so this looks for its shape (`socket`, `sendData`);
 * anything else is left as it is: a relayed connection, or a private network's (pnet already
 * writes each send as one buffer).
 */
export function coalesceSocketWrites (connection: MessageStream): MessageStream {
  const conn = connection as unknown as CorkableConnection
  if (!(conn.socket instanceof Socket) || typeof conn.sendData !== 'function' || conn[PATCHED] === true) return connection
  const socket = conn.socket
  conn[PATCHED] = true
  conn.sendData = (data: Iterable<Uint8Array>): SendResult => {
    let sentBytes = 0
    socket.cork()
    try {
      // Node buffers every piece while corked; write()'s false only means "over the high-water
      // mark", which is answered below once the pieces have gone to the kernel
      for (const buf of data) {
        sentBytes += buf.byteLength
        socket.write(buf)
      }
    } finally {
      socket.uncork()
    }
    // over the high-water mark only if a write() above returned false, so a 'drain' event follows;
    // a dead socket takes no more (as before: its write() returned false), its 'close' ends the connection
    const dead = socket.destroyed || socket.writableEnded || socket.errored != null
    return { sentBytes, canSendMore: !dead && socket.writableLength < socket.writableHighWaterMark }
  }
  return connection
}

/** `factory` (e.g. `noise()`), with each TCP connection it secures writing each send in one piece. */
export function withCoalescedWrites<C extends ConnectionEncrypter> (factory: (components: any) => C): (components: any) => C {
  return (components) => {
    const encrypter = factory(components)
    // wrap in place: the encrypter keeps its own identity (tags, capabilities) for libp2p
    const outbound = encrypter.secureOutbound.bind(encrypter)
    const inbound = encrypter.secureInbound.bind(encrypter)
    encrypter.secureOutbound = async (connection, options) => await outbound(coalesceSocketWrites(connection), options)
    encrypter.secureInbound = async (connection, options) => await inbound(coalesceSocketWrites(connection), options)
    return encrypter
  }
}

const PATCHED = Symbol('gosync.coalescedWrites')

interface SendResult { sentBytes: number, canSendMore: boolean }

/** The shape of @libp2p/tcp's connection that this relies on. */
interface CorkableConnection {
  socket?: unknown
  sendData?: (data: Iterable<Uint8Array>) => SendResult
  [PATCHED]?: boolean
}
