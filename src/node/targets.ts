import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'

export class BadTargetError extends Error {
  override name = 'BadTargetError'
}

/**
 * A target string: a multiaddr ending in /p2p/<PeerId>, or a bare PeerId the node can
 * resolve. A multiaddr without a PeerId is refused: Noise checks the PeerId during the
 * handshake, so naming it is what keeps the tree from going to whoever holds an address.
 */
export function parseTarget (t: string): { dial: PeerId | Multiaddr, peer: string } {
  if (t.startsWith('/')) {
    let ma: Multiaddr
    try {
      ma = multiaddr(t)
    } catch (err) {
      throw new BadTargetError(`${t}: not a valid multiaddr (${(err as Error).message})`)
    }
    const id = ma.getComponents().findLast(c => c.name === 'p2p')?.value
    if (id == null) throw new BadTargetError(`${t}: a target multiaddr must include /p2p/<PeerId>`)
    return { dial: ma, peer: peerIdFromString(id).toString() }
  }
  try {
    const id = peerIdFromString(t)
    return { dial: id, peer: id.toString() }
  } catch {
    throw new BadTargetError(`${JSON.stringify(t)} is neither a multiaddr nor a PeerId`)
  }
}

